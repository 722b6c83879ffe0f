use std::collections::HashMap;
use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata};

use super::*;
use crate::store::codec::Record;
use crate::store::devices::{AuthDevice, delete_in};
use crate::store::events::RollupRecord;
use crate::store::recent_spill::{RECENT_SPILL, RECENT_SPILL_BY_TS};
use crate::store::schema::{EVENTS, ROLLUPS};
use crate::sync::wire::{StoredEvent, SyncItem};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<Store>,
    ingest: Ingest,
    thread: std::thread::JoinHandle<()>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let store = Arc::new(Store::open(&path).unwrap());
    let (ingest, thread) = Ingest::start(Arc::clone(&store)).unwrap();
    Fixture { _dir: dir, path, store, ingest, thread }
}

impl Fixture {
    fn device(&self, user: u32, key: &str) -> u32 {
        match self.store.auth_device(user, key, "dev", 1).unwrap() {
            AuthDevice::Ready(d) => d.id,
            other => panic!("{other:?}"),
        }
    }

    /// Stops the writer and reopens the file, as a restart does.
    fn restart(self) -> Fixture {
        let Fixture { _dir, path, store, ingest, thread } = self;
        drop(ingest);
        thread.join().unwrap();
        Arc::try_unwrap(store).ok().unwrap().close().unwrap();
        let store = Arc::new(Store::open(&path).unwrap());
        let (ingest, thread) = Ingest::start(Arc::clone(&store)).unwrap();
        Fixture { _dir, path, store, ingest, thread }
    }

    fn event_count(&self) -> u64 {
        self.store.read().unwrap().open_table(EVENTS).unwrap().len().unwrap()
    }

    /// Sums over all rollups of a user: (events, usage_total, column name -> sum).
    fn totals(&self, user: u32) -> (u64, u64, HashMap<String, u64>) {
        let txn = self.store.read().unwrap();
        let t = txn.open_table(ROLLUPS).unwrap();
        let names = self.store.strings().unwrap();
        let (mut events, mut total, mut cols) = (0, 0, HashMap::new());
        for row in
            t.range((user, 0, 0, 0, 0, 0)..=(user, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX)).unwrap()
        {
            let (_, v) = row.unwrap();
            let r = RollupRecord::decode(v.value()).unwrap();
            events += r.events;
            total += r.usage_total;
            for (c, n) in r.tokens {
                *cols.entry(names[&c].clone()).or_insert(0) += n;
            }
        }
        (events, total, cols)
    }
}

fn item(ts: i64, id: &str, model: u32, tokens: &[u64]) -> SyncItem {
    SyncItem {
        ts_ms: ts,
        message_id: id.into(),
        event: StoredEvent {
            model_id: model,
            session_id: 1,
            source_file_id: 2,
            project_name_id: 3,
            tokens: tokens.to_vec(),
        },
        usage_total: tokens.iter().sum(),
        is_correction: false,
    }
}

fn batch(provider: &str, items: Vec<SyncItem>) -> SyncBatchPayload {
    let columns = if provider == "codex" {
        vec!["input", "output", "reasoning_output", "cached_input"]
    } else {
        vec!["input", "output", "cache_create", "cache_read"]
    };
    SyncBatchPayload {
        items,
        dict: HashMap::from([
            (0, "model-a".into()),
            (1, "session-1".into()),
            (3, "proj".into()),
            (9, "model-b".into()),
        ]),
        provider: provider.into(),
        token_columns: columns.into_iter().map(String::from).collect(),
    }
}

async fn send(f: &Fixture, device: u32, user: u32, b: SyncBatchPayload) -> BatchOutcome {
    f.ingest.submit(BatchJob { device, user, batch: b }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_versions_replace_and_retransmissions_dedup() {
    let f = fixture();
    let d = f.device(1, "k");
    let out = send(
        &f,
        d,
        1,
        batch(
            "claude_code",
            vec![item(1000, "msg_a:0", 0, &[10, 1, 0, 0]), item(1000, "msg_b", 0, &[5, 5, 0, 0])],
        ),
    )
    .await;
    assert_eq!(out.cursor, 1000);
    assert_eq!((out.applied.inserted, out.applied.duplicates), (2, 0));
    // Resend: nothing doubles.
    let out = send(&f, d, 1, batch("claude_code", vec![item(1000, "msg_a", 0, &[10, 1, 0, 0])])).await;
    assert_eq!(out.applied.duplicates, 1);
    // A later streaming version of msg_a, with another model: replaces (and moves rollups).
    let out = send(&f, d, 1, batch("claude_code", vec![item(2000, "msg_a", 9, &[10, 50, 0, 7])])).await;
    assert_eq!((out.applied.replaced, out.cursor), (1, 2000));
    // An older version arriving late is ignored, but the cursor stays at the max.
    let out = send(&f, d, 1, batch("claude_code", vec![item(1500, "msg_a", 0, &[1, 1, 1, 1])])).await;
    assert_eq!((out.applied.stale, out.cursor), (1, 2000));
    assert_eq!(f.event_count(), 2);
    let (events, total, cols) = f.totals(1);
    assert_eq!(events, 2);
    assert_eq!(total, 67 + 10);
    assert_eq!(cols["input"], 15);
    assert_eq!(cols["output"], 55);
    assert_eq!(cols["cache_read"], 7);

    // Within one batch, in item order: two versions then a retransmission.
    let out = send(
        &f,
        d,
        1,
        batch(
            "claude_code",
            vec![
                item(3000, "msg_c", 0, &[1, 0, 0, 0]),
                item(3100, "msg_c", 0, &[1, 2, 0, 0]),
                item(3100, "msg_c", 0, &[1, 2, 0, 0]),
            ],
        ),
    )
    .await;
    assert_eq!((out.applied.inserted, out.applied.replaced, out.applied.duplicates), (1, 1, 1));
    assert_eq!(f.event_count(), 3);
    assert_eq!(f.totals(1).0, 3);

    // After a restart the recent index is rebuilt: a later version still replaces.
    let f = f.restart();
    let out = send(&f, d, 1, batch("claude_code", vec![item(4000, "msg_c", 0, &[1, 3, 0, 0])])).await;
    assert_eq!(out.applied.replaced, 1);
    assert_eq!(f.event_count(), 3);
    assert_eq!(f.totals(1).1, 67 + 10 + 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retransmitted_stored_version_followed_by_a_later_one_replaces_it() {
    let f = fixture();
    let d = f.device(1, "k");
    send(&f, d, 1, batch("claude_code", vec![item(100, "msg_x", 0, &[10, 0, 0, 0])])).await;
    // The client resends the stored version and then a newer one in the same batch.
    let out = send(
        &f,
        d,
        1,
        batch(
            "claude_code",
            vec![item(100, "msg_x", 0, &[10, 0, 0, 0]), item(200, "msg_x", 0, &[25, 5, 0, 0])],
        ),
    )
    .await;
    assert_eq!(out.applied.replaced, 1);
    assert_eq!(f.event_count(), 1, "only the newest version is stored");
    let (events, total, cols) = f.totals(1);
    assert_eq!((events, total, cols["input"]), (1, 30, 25));
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_and_empty_ids_include_ts_in_identity() {
    let f = fixture();
    let d = f.device(1, "k");
    let items = vec![
        item(100, "codex", 0, &[10, 2, 1, 4]),
        item(200, "codex", 0, &[10, 2, 1, 4]),
        item(300, "sess-uuid", 0, &[1, 1, 0, 0]),
    ];
    send(&f, d, 1, batch("codex", items.clone())).await;
    let out = send(&f, d, 1, batch("codex", items)).await;
    assert_eq!(out.applied.duplicates, 3);
    assert_eq!(f.event_count(), 3);
    let (events, _, cols) = f.totals(1);
    assert_eq!(events, 3);
    assert_eq!(cols["reasoning_output"], 2);
    assert_eq!(cols["cached_input"], 8);
    // Claude events without an id are also kept per ts.
    send(
        &f,
        d,
        1,
        batch("claude_code", vec![item(10, "", 0, &[1, 0, 0, 0]), item(11, "", 0, &[1, 0, 0, 0])]),
    )
    .await;
    assert_eq!(f.event_count(), 5);
    // Unknown providers are stored as given.
    let out = send(&f, d, 1, batch("gemini", vec![item(5, "x", 0, &[1, 0, 0, 0])])).await;
    assert_eq!((out.applied.inserted, out.cursor), (1, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_batches_are_stored_as_far_as_possible() {
    let f = fixture();
    let d = f.device(1, "k");
    let mut b = batch("claude_code", vec![item(50, "m1", 77, &[1, 2, 3, 4, 5, 6]), item(40, "m2", 0, &[9])]);
    b.token_columns = vec!["input".into(), "output".into(), "mystery".into()];
    b.items[1].event.project_name_id = 0;
    b.items[0].event.session_id = 12345;
    let out = send(&f, d, 1, b).await;
    assert_eq!((out.applied.inserted, out.cursor), (2, 50));
    let (_, _, cols) = f.totals(1);
    assert_eq!((cols["input"], cols["output"], cols["mystery"]), (10, 2, 3));
    // An empty batch reports the current cursor.
    let out = send(&f, d, 1, batch("claude_code", vec![])).await;
    assert_eq!(out.cursor, 50);
    let out = send(&f, d, 1, batch("never-seen", vec![])).await;
    assert_eq!(out.cursor, 0);
    // Negative timestamps are accepted and deduplicated; the cursor never goes back.
    let out = send(&f, d, 1, batch("claude_code", vec![item(-5, "neg", 0, &[1, 0, 0, 0])])).await;
    assert_eq!(out.cursor, 50);
    send(&f, d, 1, batch("claude_code", vec![item(-5, "neg", 0, &[1, 0, 0, 0])])).await;
    assert_eq!(f.event_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_devices_and_exec_jobs() {
    let f = fixture();
    let d1 = f.device(1, "k1");
    let d2 = f.device(1, "k2");
    send(&f, d1, 1, batch("claude_code", vec![item(1, "a", 0, &[1, 0, 0, 0])])).await;
    send(&f, d2, 1, batch("claude_code", vec![item(1, "a", 0, &[2, 0, 0, 0])])).await;
    assert_eq!(f.totals(1).2["input"], 3);
    let removed = f
        .ingest
        .exec(move |ctx| {
            ctx.forget_device(d1);
            delete_in(ctx.txn, d1, 5)
        })
        .await
        .unwrap();
    assert_eq!(removed.map(|d| d.id), Some(d1));
    assert_eq!(f.event_count(), 1);
    assert_eq!(f.totals(1).2["input"], 2);
    assert_eq!(f.store.cursor(d1, "claude_code").unwrap(), 0);
    let gone = f
        .ingest
        .submit(BatchJob {
            device: d1,
            user: 1,
            batch: batch("claude_code", vec![item(2, "b", 0, &[1, 0, 0, 0])]),
        })
        .await;
    assert!(matches!(gone, Err(IngestError::DeviceGone)));
    // An exec error aborts only its own transaction.
    let err = f.ingest.exec(|_| Err::<(), _>(StoreError::Corrupt("nope".into()))).await;
    assert!(err.is_err());
    send(&f, d2, 1, batch("claude_code", vec![item(3, "c", 0, &[1, 0, 0, 0])])).await;
    assert_eq!(f.event_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_batches_share_commits() {
    let f = fixture();
    let mut devices = Vec::new();
    for i in 0..20 {
        devices.push(f.device(1, &format!("k{i}")));
    }
    let mut tasks = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let ingest = f.ingest.clone();
        let d = *d;
        tasks.push(tokio::spawn(async move {
            for b in 0..10 {
                let items = (0..100)
                    .map(|n| item(1 + b * 1000 + n, &format!("m{i}-{b}-{n}"), 0, &[1, 1, 0, 0]))
                    .collect();
                ingest
                    .submit(BatchJob { device: d, user: 1, batch: batch("claude_code", items) })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(f.event_count(), 20 * 10 * 100);
    assert_eq!(f.totals(1).0, 20_000);
    let (commits, batches, items) = f.ingest.stats.snapshot();
    assert_eq!((batches, items), (200, 20_000));
    assert!(commits <= batches);
}

/// `n` distinct Claude ids `flood-0`… (one input token each) at `ts(i)`, in batches of 20,000.
async fn send_flood(f: &Fixture, device: u32, user: u32, n: usize, ts: impl Fn(usize) -> i64) {
    for chunk in 0..n.div_ceil(20_000) {
        let items = (chunk * 20_000..((chunk + 1) * 20_000).min(n))
            .map(|i| item(ts(i), &format!("flood-{i}"), 0, &[1, 0, 0, 0]))
            .collect();
        send(f, device, user, batch(CLAUDE_CODE, items)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_holds_after_the_recent_index_overflows_and_after_a_restart() {
    use super::recent::MAX_PER_STREAM;
    let f = fixture();
    let (user, device) = (1, f.device(1, "flood"));
    // The message whose earlier version must still be found after the flood evicted it.
    send(&f, device, user, batch(CLAUDE_CODE, vec![item(10, "msg_target", 0, &[100, 0, 0, 0])])).await;
    // A flood of distinct ids at one constant ts (the time window never prunes them).
    let flood = MAX_PER_STREAM + 5_000;
    send_flood(&f, device, user, flood, |_| 20).await;
    let spilled = f.store.read().unwrap().open_table(RECENT_SPILL).unwrap().len().unwrap();
    assert!(spilled > 0, "the flood overflowed the in-memory index");
    let events = 1 + flood as u64;
    assert_eq!(f.event_count(), events);

    // A later version replaces the evicted one, an older one is ignored, and a flood id sent
    // again (evicted or not) is a retransmission.
    let out = send(
        &f,
        device,
        user,
        batch(
            CLAUDE_CODE,
            vec![item(30, "msg_target", 0, &[7, 0, 0, 0]), item(5, "flood-0", 0, &[9, 9, 9, 9])],
        ),
    )
    .await;
    assert_eq!((out.applied.replaced, out.applied.stale), (1, 1));
    assert_eq!(f.event_count(), events);
    assert_eq!(f.totals(user).2["input"], 7 + flood as u64);

    // After a restart the index is rebuilt within its cap and the spill table still answers.
    let f = f.restart();
    let out = send(
        &f,
        device,
        user,
        batch(
            CLAUDE_CODE,
            vec![item(40, "msg_target", 0, &[8, 0, 0, 0]), item(6, "flood-1", 0, &[5, 0, 0, 0])],
        ),
    )
    .await;
    assert_eq!((out.applied.replaced, out.applied.stale), (1, 1));
    assert_eq!(f.event_count(), events);
    assert_eq!(f.totals(user).2["input"], 8 + flood as u64);

    // Deleting the device removes its spill rows.
    f.ingest
        .exec(move |ctx| {
            ctx.forget_device(device);
            delete_in(ctx.txn, device, 1)
        })
        .await
        .unwrap();
    assert_eq!(f.store.read().unwrap().open_table(RECENT_SPILL).unwrap().len().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spill_table_shrinks_again_once_its_ids_leave_the_window() {
    use super::recent::{MAX_PER_STREAM, WINDOW_MS};
    let f = fixture();
    let (user, device) = (1, f.device(1, "flood"));
    let flood = MAX_PER_STREAM + 5_000;
    send_flood(&f, device, user, flood, |i| 1_000 + (i / 1000) as i64).await;
    let rows = |f: &Fixture| {
        let txn = f.store.read().unwrap();
        (
            txn.open_table(RECENT_SPILL).unwrap().len().unwrap(),
            txn.open_table(RECENT_SPILL_BY_TS).unwrap().len().unwrap(),
        )
    };
    let (spilled, indexed) = rows(&f);
    assert!(spilled > 0, "the flood overflowed the in-memory index");
    assert_eq!(spilled, indexed, "every spilled row is in the time index");
    let stream = {
        let txn = f.store.read().unwrap();
        let t = txn.open_table(RECENT_SPILL).unwrap();
        t.iter().unwrap().next().unwrap().unwrap().0.value().0
    };

    // A file from before the time index: its spill rows are indexed at the next start.
    f.store.write(|txn| Ok::<_, crate::store::StoreError>(txn.delete_table(RECENT_SPILL_BY_TS)?)).unwrap();
    let f = f.restart();
    assert_eq!(rows(&f), (spilled, spilled));

    // Nothing leaves while the spilled ids are inside the window.
    let in_window = 1_000 + WINDOW_MS;
    send(&f, device, user, batch(CLAUDE_CODE, vec![item(in_window, "later-0", 0, &[1, 0, 0, 0])])).await;
    // (The restarted index was loaded up to its cap, so this one event evicted a few more.)
    let (spilled, indexed) = rows(&f);
    assert!(spilled >= 30_000 && spilled == indexed, "{spilled} rows, {indexed} indexed");
    // The window moves past part of them (the oldest thousand ids share one ts), then all.
    send(&f, device, user, batch(CLAUDE_CODE, vec![item(in_window + 1, "later-1", 0, &[1, 0, 0, 0])])).await;
    let (partly, _) = rows(&f);
    assert!(partly < spilled && partly > 0, "{partly} of {spilled} rows left");
    assert_eq!(rows(&f), (partly, partly));
    send(&f, device, user, batch(CLAUDE_CODE, vec![item(in_window + 1_000, "later-2", 0, &[1, 0, 0, 0])]))
        .await;
    assert_eq!(rows(&f), (0, 0), "the spill table is empty again");

    // Events stay, and dedup within the window still works.
    assert_eq!(f.event_count(), flood as u64 + 3);
    let out =
        send(&f, device, user, batch(CLAUDE_CODE, vec![item(in_window, "later-0", 0, &[1, 0, 0, 0])])).await;
    assert_eq!(out.applied.duplicates, 1);

    // A file from before pruning, with spill rows long out of the window and no time index:
    // pruned at the next start.
    f.store
        .write(|txn| {
            crate::store::recent_spill::put_in(txn, &[(stream, 1, 5), (stream, 2, 6)])?;
            txn.delete_table(RECENT_SPILL_BY_TS)?;
            Ok::<_, crate::store::StoreError>(())
        })
        .unwrap();
    assert_eq!(f.store.read().unwrap().open_table(RECENT_SPILL).unwrap().len().unwrap(), 2);
    let f = f.restart();
    assert_eq!(rows(&f), (0, 0), "pruned at start-up");
}

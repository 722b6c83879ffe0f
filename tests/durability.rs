//! Durability of the real binary: several devices stream batches while the server is killed with
//! SIGKILL at random moments, round after round; then a clean SIGTERM in the middle of ingest.
//!
//! Each device behaves like the real client: after every restart it first resends the batch whose
//! ACK it never got (same timestamps and message ids), then continues from LAST_TS + 1. At the end
//! the data file holds exactly the acknowledged events, each once (so a retransmission of a batch
//! that had been committed before the kill was deduplicated), the rollups agree with the events,
//! LAST_TS never went below anything the server had reported, and a batch was never half stored.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sync_client::*;
use common::*;
use toki_sync::store::codec::Record;
use toki_sync::store::events::id_hash;
use toki_sync::sync::wire::SyncBatchPayload;

const DEVICES: usize = 4;
const ROUNDS: usize = 5;
const BATCH: i64 = 200;
/// A sanity bound on start-up (spawn to the ready line), not a benchmark: BENCHMARKS.md has the
/// measured figure.
const START_BOUND: Duration = Duration::from_secs(10);

/// An event as the client identifies it: (ts, message id).
type Key = (i64, String);

/// What one device has seen.
#[derive(Default)]
struct DeviceLog {
    device_id: Option<String>,
    /// Every item of every acknowledged batch (resends included once ACKed).
    acked: Vec<Key>,
    /// The last ACKed cursor.
    cursor: i64,
    /// The highest LAST_TS or ACK cursor the server ever reported: everything up to it was
    /// committed, so LAST_TS may never go below it again.
    max_seen: i64,
    /// The batch sent last whose ACK never came; it is resent after the restart.
    in_flight: Option<Vec<Key>>,
    /// New batches acknowledged (resends not counted): progress.
    fresh_acks: u64,
    /// Resends of a batch that had been committed (LAST_TS was past it, or it had been ACKed):
    /// the retransmissions the server must deduplicate.
    committed_resends: u64,
    resends: u64,
}

impl DeviceLog {
    fn ack(&mut self, cursor: i64, items: Vec<Key>, fresh: bool) {
        let top = items.iter().map(|(ts, _)| *ts).max().expect("batches are not empty");
        assert!(cursor >= self.cursor, "SYNC_ACK cursor went back from {} to {cursor}", self.cursor);
        assert!(cursor >= top, "SYNC_ACK cursor {cursor} is behind the batch's last event {top}");
        self.cursor = cursor;
        self.max_seen = self.max_seen.max(cursor);
        self.acked.extend(items);
        self.in_flight = None;
        if fresh {
            self.fresh_acks += 1;
        }
    }
}

/// A small deterministic generator for the kill moments; the seed is printed so a failure can
/// be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn batch_of(keys: &[Key]) -> SyncBatchPayload {
    batch("claude_code", keys.iter().map(|(ts, id)| item(*ts, id, 0, [3, 2, 0, 1])).collect())
}

/// One device's session: AUTH, GET_LAST_TS (checked against everything seen before), the resend
/// of the unacknowledged batch, then, if `keep_going`, new batches until the server goes away, or
/// else a retransmission of the last acknowledged batch.
/// The server is never stopped before every device has a new batch acknowledged, so everything
/// up to and including the resend must succeed.
async fn stream(
    addr: std::net::SocketAddr,
    token: String,
    device: usize,
    log: Arc<Mutex<DeviceLog>>,
    round: usize,
    keep_going: bool,
) {
    let ctx = format!("round {round}, device {device}");
    let mut c = SyncClient::try_plain(addr).await.unwrap_or_else(|e| panic!("{ctx}: connect: {e}"));
    let reply = c.try_auth(&auth_payload(&token, &format!("durable-{device}"), "claude_code")).await;
    let Some(AuthReply::Ok(device_id)) = reply else { panic!("{ctx}: AUTH failed: {reply:?}") };
    let last = c.try_last_ts("claude_code").await.unwrap_or_else(|| panic!("{ctx}: no LAST_TS"));
    let resend = {
        let mut l = log.lock().unwrap();
        assert!(last >= l.max_seen, "{ctx}: LAST_TS {last} went below {} reported earlier", l.max_seen);
        l.max_seen = last;
        if let Some(prev) = &l.device_id {
            assert_eq!(prev, &device_id, "{ctx}: the device keeps its id across restarts");
        }
        l.device_id = Some(device_id);
        let resend = l.in_flight.clone();
        if let Some(items) = &resend {
            let (first, top) = (items[0].0, items[items.len() - 1].0);
            // A batch is one transaction: the cursor is before it or past all of it.
            assert!(
                last < first || last >= top,
                "{ctx}: LAST_TS {last} is inside the unacknowledged batch {first}..={top}"
            );
            l.resends += 1;
            if last >= top {
                l.committed_resends += 1;
            }
        }
        resend
    };
    let mut next_ts = last + 1;
    if let Some(items) = resend {
        match c.try_batch(&batch_of(&items)).await {
            Some(Ok(cursor)) => {
                log.lock().unwrap().ack(cursor, items, false);
                next_ts = next_ts.max(cursor + 1);
            }
            Some(Err(reason)) => panic!("{ctx}: resend refused: {reason}"),
            None => panic!("{ctx}: connection lost during the resend"),
        }
    }
    if !keep_going {
        // The last acknowledged batch once more, as a client sends it when the ACK was lost on
        // the way: a retransmission of committed events, whatever the kills' timing was.
        let (items, cursor) = {
            let l = log.lock().unwrap();
            (l.acked[l.acked.len() - BATCH as usize..].to_vec(), l.cursor)
        };
        assert_eq!(
            c.try_batch(&batch_of(&items)).await,
            Some(Ok(cursor)),
            "{ctx}: a retransmitted batch is ACKed, the cursor unchanged"
        );
        let mut l = log.lock().unwrap();
        l.resends += 1;
        l.committed_resends += 1;
        return;
    }
    loop {
        let items: Vec<Key> =
            (next_ts..next_ts + BATCH).map(|ts| (ts, format!("msg-{device}-{ts}"))).collect();
        log.lock().unwrap().in_flight = Some(items.clone());
        match c.try_batch(&batch_of(&items)).await {
            Some(Ok(cursor)) => {
                log.lock().unwrap().ack(cursor, items, true);
                next_ts += BATCH;
            }
            Some(Err(reason)) => panic!("{ctx}: SYNC_ERR: {reason}"),
            None => return,
        }
    }
}

struct Round {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acks_before: Vec<u64>,
}

fn start_round(
    rt: &tokio::runtime::Runtime,
    server: &BinServer,
    token: &str,
    logs: &[Arc<Mutex<DeviceLog>>],
    round: usize,
    keep_going: bool,
) -> Round {
    let acks_before = logs.iter().map(|l| l.lock().unwrap().fresh_acks).collect();
    let tasks = logs
        .iter()
        .enumerate()
        .map(|(d, l)| rt.spawn(stream(server.sync, token.to_owned(), d, Arc::clone(l), round, keep_going)))
        .collect();
    Round { tasks, acks_before }
}

impl Round {
    /// Waits until every device has had a new batch acknowledged in this round, so a stop that
    /// follows always lands in the middle of ingest, never before it (the round would pass
    /// without testing anything).
    fn wait_for_progress(
        &mut self,
        rt: &tokio::runtime::Runtime,
        logs: &[Arc<Mutex<DeviceLog>>],
        round: usize,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let behind: Vec<usize> = (0..logs.len())
                .filter(|d| logs[*d].lock().unwrap().fresh_acks <= self.acks_before[*d])
                .collect();
            if behind.is_empty() {
                return;
            }
            if let Some(i) = self.tasks.iter().position(|t| t.is_finished()) {
                // A device ended before making progress: surface its panic.
                rt.block_on(&mut self.tasks[i]).expect("stream task");
                panic!("round {round}: device {i} stopped before any batch was acknowledged");
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: devices {behind:?} got no batch acknowledged within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join(self, rt: &tokio::runtime::Runtime, logs: &[Arc<Mutex<DeviceLog>>], round: usize) {
        for t in self.tasks {
            rt.block_on(t).expect("stream task");
        }
        for (d, l) in logs.iter().enumerate() {
            assert!(
                l.lock().unwrap().fresh_acks > self.acks_before[d],
                "round {round}: device {d} made no progress"
            );
        }
    }
}

fn start_server(dir: &std::path::Path, envs: &[(&str, &str)], what: &str) -> BinServer {
    let spawned = Instant::now();
    let server = BinServer::start(dir, envs);
    let took = spawned.elapsed();
    eprintln!("{what}: {took:?} from spawn to the ready line");
    assert!(took < START_BOUND, "{what}: {took:?} from spawn to serving (bound {START_BOUND:?})");
    server
}

#[test]
fn acked_events_survive_kill_9_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("durability seed: {seed}");
    let mut rng = Rng(seed);
    let logs: Vec<Arc<Mutex<DeviceLog>>> =
        (0..DEVICES).map(|_| Arc::new(Mutex::new(DeviceLog::default()))).collect();

    let mut server = start_server(dir.path(), &[("TOKI_ADMIN_PASSWORD", "durable-admin-pw")], "first start");
    let token = rt.block_on(async {
        Client::at(server.http).login("admin", "durable-admin-pw").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    });

    for round in 0..ROUNDS {
        let mut r = start_round(&rt, &server, &token, &logs, round, true);
        r.wait_for_progress(&rt, &logs, round);
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        server.kill9();
        r.join(&rt, &logs, round);
        server = start_server(dir.path(), &[], &format!("restart after kill -9 #{}", round + 1));
    }

    // A clean SIGTERM in the middle of ingest: in-flight batches finish, the file closes.
    let mut r = start_round(&rt, &server, &token, &logs, ROUNDS, true);
    r.wait_for_progress(&rt, &logs, ROUNDS);
    std::thread::sleep(Duration::from_millis(rng.below(1000)));
    let (clean, _) = server.stop();
    assert!(clean, "SIGTERM mid-ingest exits with status 0");
    r.join(&rt, &logs, ROUNDS);

    // Reopen, and let every device resend what is still unacknowledged, as a client would.
    let server = start_server(dir.path(), &[], "restart after SIGTERM");
    let tasks: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(d, l)| rt.spawn(stream(server.sync, token.clone(), d, Arc::clone(l), ROUNDS + 1, false)))
        .collect();
    for t in tasks {
        rt.block_on(t).expect("final resend");
    }
    let (clean, _) = server.stop();
    assert!(clean);

    // Verify on the file itself.
    let store = toki_sync::store::Store::open(&dir.path().join(toki_sync::store::DB_FILE_NAME)).unwrap();
    let txn = store.read().unwrap();
    let events = txn.open_table(toki_sync::store::schema::EVENTS).unwrap();
    let claude = store.string_id("claude_code").unwrap().expect("provider interned");
    let (mut total_acked, mut resends, mut committed_resends) = (0usize, 0, 0);
    for (d, l) in logs.iter().enumerate() {
        let l = l.lock().unwrap();
        assert!(l.in_flight.is_none(), "device {d}: the final resend was acknowledged");
        let device = store.device_by_uuid(l.device_id.as_ref().unwrap().parse().unwrap()).unwrap().unwrap();
        let stream =
            store.device_streams(device.id).unwrap().into_iter().find(|(p, _)| *p == claude).unwrap().1;

        // What the server acknowledged, each event once (a resend replaces an unacknowledged
        // batch, it never adds to an acknowledged one).
        let mut acked: HashSet<(i64, u64)> = HashSet::new();
        for (ts, id) in &l.acked {
            assert!(acked.insert((*ts, id_hash(id))), "device {d}: {id} at {ts} was acknowledged twice");
        }
        // What is stored for the stream: exactly that set, and no message id twice.
        let mut stored: HashSet<(i64, u64)> = HashSet::new();
        let mut ids: HashMap<u64, i64> = HashMap::new();
        for row in events.range((stream, i64::MIN, 0)..=(stream, i64::MAX, u64::MAX)).unwrap() {
            let (k, v) = row.unwrap();
            let (_, ts, hash) = k.value();
            assert!(acked.contains(&(ts, hash)), "device {d}: stored event at {ts} was never acknowledged");
            if let Some(prev) = ids.insert(hash, ts) {
                panic!("device {d}: one message id stored twice, at {prev} and {ts}");
            }
            let rec = toki_sync::store::events::EventRecord::decode(v.value()).unwrap();
            assert_eq!(rec.usage_total, 6);
            stored.insert((ts, hash));
        }
        let missing: Vec<_> = acked.difference(&stored).take(5).collect();
        assert!(missing.is_empty(), "device {d}: acknowledged events are missing, e.g. {missing:?}");
        assert_eq!(
            store.cursor(device.id, "claude_code").unwrap(),
            l.cursor,
            "device {d}: the stored cursor is the last ACKed one"
        );
        total_acked += acked.len();
        resends += l.resends;
        committed_resends += l.committed_resends;
    }
    // Nothing else is stored, and the rollups count the same events once.
    let stored = store.stats().unwrap().events as usize;
    assert_eq!(stored, total_acked, "stored events are exactly the acknowledged ones");
    let admin = store.user_by_name("admin").unwrap().unwrap();
    let (rolled_up, total, _) = usage_totals(&store, admin.id);
    assert_eq!(rolled_up as usize, stored, "rollups count every stored event once");
    assert_eq!(total as usize, stored * 6);
    assert!(committed_resends >= DEVICES as u64, "every device retransmitted committed events");
    eprintln!(
        "durability: {total_acked} events acknowledged and stored over {ROUNDS} kills and a SIGTERM; \
         {resends} batches resent, {committed_resends} of them events that were already committed"
    );
}

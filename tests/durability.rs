//! Durability of the real binary: several devices stream batches while the server is killed with
//! SIGKILL at random moments, round after round; then a clean SIGTERM in the middle of ingest.
//! Afterwards every acknowledged event is present exactly once, rollups agree with the events,
//! and LAST_TS never went backwards.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sync_client::*;
use common::*;
use toki_sync::store::codec::Record;
use toki_sync::store::events::id_hash;

const DEVICES: usize = 4;
const ROUNDS: usize = 5;
const BATCH: i64 = 200;

/// What one device has had acknowledged: (ts, message id) of every ACKed item and the last
/// ACKed cursor.
#[derive(Default)]
struct Acked {
    items: Vec<(i64, String)>,
    cursor: i64,
    device_id: Option<String>,
}

/// A small deterministic generator for the kill moments; the seed is printed so a failure can
/// be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Streams batches until the connection fails. Before sending, checks that LAST_TS did not go
/// back behind what was acknowledged earlier.
async fn stream(addr: std::net::SocketAddr, token: String, device: usize, acked: Arc<Mutex<Acked>>, round: usize) {
    let key = format!("durable-{device}");
    let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(10), SyncClient::try_plain(addr)).await else { return };
    let Some(reply) = c.try_auth(&auth_payload(&token, &key, "claude_code")).await else { return };
    let AuthReply::Ok(device_id) = reply else { panic!("AUTH refused: {reply:?}") };
    let Some(last) = c.try_last_ts("claude_code").await else { return };
    {
        let mut a = acked.lock().unwrap();
        assert!(last >= a.cursor, "round {round}, device {device}: LAST_TS {last} went back behind the ACKed {}", a.cursor);
        if let Some(prev) = &a.device_id {
            assert_eq!(prev, &device_id, "the device keeps its id across restarts");
        }
        a.device_id = Some(device_id);
    }
    // Continue after everything acknowledged (like the real client, from LAST_TS + 1).
    let mut next_ts = last + 1;
    loop {
        let items: Vec<_> =
            (0..BATCH).map(|i| item(next_ts + i, &format!("msg-{device}-{}", next_ts + i), 0, [3, 2, 0, 1])).collect();
        let sent: Vec<(i64, String)> = items.iter().map(|i| (i.ts_ms, i.message_id.clone())).collect();
        match c.try_batch(&batch("claude_code", items)).await {
            Some(Ok(cursor)) => {
                let mut a = acked.lock().unwrap();
                assert!(cursor >= a.cursor, "SYNC_ACK cursor went back");
                a.cursor = cursor;
                a.items.extend(sent);
                next_ts += BATCH;
            }
            Some(Err(reason)) => panic!("SYNC_ERR: {reason}"),
            None => return,
        }
    }
}

fn run_round(
    rt: &tokio::runtime::Runtime,
    server: &BinServer,
    token: &str,
    acked: &[Arc<Mutex<Acked>>],
    round: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    acked
        .iter()
        .enumerate()
        .map(|(d, a)| rt.spawn(stream(server.sync, token.to_owned(), d, Arc::clone(a), round)))
        .collect()
}

#[test]
fn acked_events_survive_kill_9_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("durability seed: {seed}");
    let mut rng = Rng(seed);
    let acked: Vec<Arc<Mutex<Acked>>> = (0..DEVICES).map(|_| Arc::new(Mutex::new(Acked::default()))).collect();

    let mut server = BinServer::start(dir.path(), &[("TOKI_ADMIN_PASSWORD", "durable-admin-pw")]);
    let token = rt.block_on(async { Client::at(server.http).login("admin", "durable-admin-pw").await["access_token"].as_str().unwrap().to_owned() });

    for round in 0..ROUNDS {
        let tasks = run_round(&rt, &server, &token, &acked, round);
        // Let ingest get going, then kill at a random moment.
        std::thread::sleep(Duration::from_millis(300 + rng.next() % 1200));
        server.kill9();
        for t in tasks {
            rt.block_on(t).expect("stream task");
        }
        server = BinServer::start(dir.path(), &[]);
    }

    // A clean SIGTERM in the middle of ingest: in-flight batches finish, the file closes.
    let tasks = run_round(&rt, &server, &token, &acked, ROUNDS);
    std::thread::sleep(Duration::from_millis(500 + rng.next() % 500));
    let (clean, _) = server.stop();
    assert!(clean, "SIGTERM mid-ingest exits with status 0");
    for t in tasks {
        rt.block_on(t).expect("stream task");
    }
    let reopen = Instant::now();
    let server = BinServer::start(dir.path(), &[]);
    eprintln!("restart after SIGTERM took {:?} to serving", reopen.elapsed());
    let (clean, _) = server.stop();
    assert!(clean);

    // Verify on the file itself.
    let store = toki_sync::store::Store::open(&dir.path().join(toki_sync::store::DB_FILE_NAME)).unwrap();
    let txn = store.read().unwrap();
    let events = txn.open_table(toki_sync::store::schema::EVENTS).unwrap();
    let claude = store.string_id("claude_code").unwrap().expect("provider interned");
    let mut total_acked = 0usize;
    for (d, a) in acked.iter().enumerate() {
        let a = a.lock().unwrap();
        assert!(!a.items.is_empty(), "device {d} got batches acknowledged");
        let device = store.device_by_uuid(a.device_id.as_ref().unwrap().parse().unwrap()).unwrap().unwrap();
        let stream = store.device_streams(device.id).unwrap().into_iter().find(|(p, _)| *p == claude).unwrap().1;
        let mut seen = HashMap::new();
        for (ts, id) in &a.items {
            *seen.entry((*ts, id.clone())).or_insert(0) += 1;
            let key = (stream, *ts, id_hash(id));
            let rec = events.get(key).unwrap().unwrap_or_else(|| panic!("device {d}: ACKed event {id} at {ts} is missing"));
            let rec = toki_sync::store::events::EventRecord::decode(rec.value()).unwrap();
            assert_eq!(rec.usage_total, 6);
        }
        assert!(seen.values().all(|n| *n == 1), "device {d}: an event was ACKed twice");
        assert!(store.cursor(device.id, "claude_code").unwrap() >= a.cursor);
        total_acked += a.items.len();
    }
    // Exactly once: events are the acknowledged ones plus, at most, batches whose ACK was lost
    // in a kill (committed but unanswered); and the rollups count the same events.
    let stored = store.stats().unwrap().events as usize;
    assert!(stored >= total_acked, "stored {stored} < acknowledged {total_acked}");
    assert!(stored <= total_acked + (ROUNDS + 1) * DEVICES * BATCH as usize, "stored {stored} events, far more than acknowledged {total_acked}");
    let admin = store.user_by_name("admin").unwrap().unwrap();
    let (rolled_up, total, _) = usage_totals(&store, admin.id);
    assert_eq!(rolled_up as usize, stored, "rollups count every stored event once");
    assert_eq!(total as usize, stored * 6);
    eprintln!("durability: {total_acked} events acknowledged over {ROUNDS} kills and a SIGTERM; {stored} stored");
}

//! `cargo bench --bench ingest`: the CPU side of ingest, without the network or the disk's
//! fsync latency: decoding client frames (bincode, zstd) and applying batches through the real
//! writer into a data file on tmpfs (/dev/shm when it exists). Prints events/s per stage.
//! The whole path over real sockets and a real disk is `toki-sync bench ingest`.

use std::sync::Arc;
use std::time::Instant;

use toki_sync::bench::workload::Stream;
use toki_sync::ingest::{BatchJob, Ingest};
use toki_sync::store::Store;
use toki_sync::store::devices::AuthDevice;
use toki_sync::store::users::{NewUser, Role, UserStatus};
use toki_sync::sync::wire::{
    MAX_DECOMPRESSED, MsgType, SyncBatchPayload, decode, decode_zstd_batch, encode_frame,
};

const BATCHES: usize = 400;
const BATCH: usize = 1000;

fn report(stage: &str, events: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!("{stage:<34} {:>10.0} events/s  ({events} events in {secs:.3} s)", events as f64 / secs);
}

fn main() {
    let mut stream = Stream::new("claude_code", 1, 42);
    let batches: Vec<SyncBatchPayload> =
        (0..BATCHES).map(|b| stream.batch(BATCH, 1_700_000_000_000 + (b * BATCH) as i64, 1)).collect();
    let raw: Vec<Vec<u8>> =
        batches.iter().map(|b| encode_frame(MsgType::SyncBatch, b)[8..].to_vec()).collect();
    let zstd: Vec<Vec<u8>> = raw.iter().map(|r| zstd::encode_all(&r[..], 3).unwrap()).collect();
    let events = BATCHES * BATCH;
    println!("batch of {BATCH}: {} bytes bincode, {} bytes zstd", raw[0].len(), zstd[0].len());

    let t = Instant::now();
    for r in &raw {
        std::hint::black_box(decode::<SyncBatchPayload>(r).unwrap());
    }
    report("decode bincode", events, t);
    let t = Instant::now();
    for z in &zstd {
        std::hint::black_box(decode_zstd_batch(z, MAX_DECOMPRESSED).unwrap());
    }
    report("decode zstd + bincode", events, t);

    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("toki-sync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("bench.redb")).unwrap());
    let user = store
        .create_user(NewUser {
            username: "bench".into(),
            role: Role::User,
            status: UserStatus::Active,
            password_hash: None,
            oidc_subject: None,
        })
        .unwrap();
    let AuthDevice::Ready(device) = store.auth_device(user.id, "bench-device", "bench", 1).unwrap() else {
        unreachable!()
    };
    let (ingest, writer) = Ingest::start(Arc::clone(&store)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t = Instant::now();
    rt.block_on(async {
        for b in batches {
            ingest.submit(BatchJob { device: device.id, user: user.id, batch: b }).await.unwrap();
        }
    });
    report("apply + commit (one batch/commit)", events, t);
    let file = store.file_size();
    drop(ingest);
    writer.join().unwrap();
    println!("file: {file} bytes, {:.1} bytes/event", file as f64 / events as f64);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Online backup and restore: `GET /admin/backup` while devices sync, `toki-sync backup`,
//! `toki-sync admin restore` with its checks, and the scheduled, rotated backups.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::sync_client::*;
use common::*;
use redb::ReadableTable;
use toki_sync::store::Store;

const DEVICES: usize = 3;
const BATCH: i64 = 50;
const BASE_TS: i64 = 1_750_000_000_000;

fn ts(device: usize, i: i64) -> i64 {
    BASE_TS + device as i64 * 1_000_000_000 + i * 1000
}

/// Streams batches of BATCH events as device `d` until `stop`; `acked` counts acknowledged events.
async fn ingest(
    sync: std::net::SocketAddr,
    token: String,
    d: usize,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut c = SyncClient::plain(sync).await;
    let AuthReply::Ok(_) = c.auth(&auth_payload(&token, &format!("backup-dev-{d}"), "claude_code")).await
    else {
        panic!("auth failed")
    };
    let mut next = 0i64;
    while !stop.load(Ordering::SeqCst) {
        let items =
            (next..next + BATCH).map(|i| item(ts(d, i), &format!("d{d}-{i}"), 0, [10, 5, 0, 1])).collect();
        c.batch(&batch("claude_code", items)).await.expect("batch acknowledged");
        next += BATCH;
        acked.store(next as u64, Ordering::SeqCst);
    }
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("TOKI_SYNC_TOKEN").env_remove("TOKI_ADMIN_PASSWORD");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run toki-sync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn restore(data_dir: &Path, file: &Path, force: bool) -> (i32, String, String) {
    let mut args = vec!["admin", "--data-dir", data_dir.to_str().unwrap(), "restore", file.to_str().unwrap()];
    if force {
        args.push("--force");
    }
    run(&args, &[])
}

/// Timestamps of the stored events per device.
fn stored_ts(store: &Store) -> Vec<Vec<i64>> {
    let txn = store.read().unwrap();
    let events = txn.open_table(toki_sync::store::schema::EVENTS).unwrap();
    let mut per = vec![Vec::new(); DEVICES];
    for row in events.iter().unwrap() {
        let (k, _) = row.unwrap();
        let (_, t, _) = k.value();
        per[((t - BASE_TS) / 1_000_000_000) as usize].push(t);
    }
    per.iter_mut().for_each(|v| v.sort());
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_ingest_restores_exactly_a_committed_state() {
    let mut server = TestServer::start().await;
    let http = format!("http://{}", server.addr);
    let token = server.client().admin_token().await;
    let user = server.app().store.user_by_name("admin").unwrap().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<AtomicU64>> = (0..DEVICES).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let tasks: Vec<_> = (0..DEVICES)
        .map(|d| {
            tokio::spawn(ingest(server.sync, token.clone(), d, Arc::clone(&acked[d]), Arc::clone(&stop)))
        })
        .collect();
    // Some data first, so the snapshot is taken while batches keep arriving.
    while acked.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>() < 3000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.tsbak");
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let out = file.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run(
            &["backup", "--server", &http, "--out", out.to_str().unwrap()],
            &[("TOKI_ADMIN_PASSWORD", ADMIN_PASSWORD)],
        )
    })
    .await
    .unwrap();
    let after: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    assert_eq!(code, 0, "backup failed: {stdout} {stderr}");
    assert!(stdout.contains("backup written to"), "{stdout}");
    assert!(!dir.path().join("snap.tsbak.partial").exists());
    // Ingest went on during the backup (the snapshot did not block the writer).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later: u64 = acked.iter().map(|a| a.load(Ordering::SeqCst)).sum();
    assert!(later > after.iter().sum::<u64>(), "ingest stalled");
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    server.stop().await;
    let live_total = event_count(&Store::open(&server.dir.path().join("toki-sync.redb")).unwrap());

    let restored_dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = restore(restored_dir.path(), &file, false);
    assert_eq!(code, 0, "restore failed: {stdout} {stderr}");
    assert!(stdout.contains("restored"), "{stdout}");
    let store = Store::open(&restored_dir.path().join("toki-sync.redb")).unwrap();
    let per = stored_ts(&store);
    let mut total = 0;
    for d in 0..DEVICES {
        let n = per[d].len() as u64;
        total += n;
        // Everything acknowledged before the backup began is in it, nothing acknowledged after
        // it ended, and whole batches only, each device's a prefix of what it sent.
        assert!(n >= before[d] && n <= after[d], "device {d}: {n} events, acked {}..{}", before[d], after[d]);
        assert_eq!(n % BATCH as u64, 0, "device {d}: a batch was half stored");
        let expected: Vec<i64> = (0..n as i64).map(|i| ts(d, i)).collect();
        assert_eq!(per[d], expected, "device {d}: not a prefix of what was sent");
    }
    assert!(total < live_total, "the snapshot must predate the later batches");
    // Rollups agree with the events (the same transaction wrote both).
    assert_eq!(usage_totals(&store, user.id).0, total);
    // The restored file is a working data file: users, secrets and passwords came along.
    drop(store);
    let restored = BinServer::start(restored_dir.path(), &[]);
    let r = Client::at(restored.http).login("admin", ADMIN_PASSWORD).await;
    assert!(r["access_token"].is_string());
    let me = Client::at(restored.http).get_auth("/me", &token).await;
    assert_eq!(me.status, 200, "tokens signed before the backup stay valid: {}", me.text());
    // The server holds the file: restore refuses to touch it even with --force.
    let (code, _, stderr) = restore(restored_dir.path(), &file, true);
    assert_eq!(code, 1);
    assert!(stderr.contains("in use"), "{stderr}");
    let (ok, _) = restored.stop();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_checks_before_it_replaces_anything() {
    let server = TestServer::start().await;
    let admin = create_user(server.app(), "alice", "alice-password-1", toki_sync::store::users::Role::User);
    let dev = sync_device(server.app(), admin.id, "k1", "m1", 1);
    ingest_events(&server, admin.id, dev.id, 500).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.tsbak");
    let http = format!("http://{}", server.addr);
    let token = server.client().admin_token().await;
    let g = good.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run(&["backup", "--server", &http, "--out", g.to_str().unwrap()], &[("TOKI_SYNC_TOKEN", &token)])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out} {err}");
    let bytes = std::fs::read(&good).unwrap();

    // A target with data: refused without --force, and left as it was.
    let target = tempfile::tempdir().unwrap();
    let db = target.path().join("toki-sync.redb");
    Store::open(&db).unwrap().close().unwrap();
    let original = std::fs::read(&db).unwrap();
    let (code, _, stderr) = restore(target.path(), &good, false);
    assert_eq!(code, 1);
    assert!(stderr.contains("--force"), "{stderr}");

    let truncated = dir.path().join("truncated.tsbak");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (code, _, stderr) = restore(target.path(), &truncated, true);
    assert_eq!(code, 1);
    assert!(stderr.contains("truncated"), "{stderr}");

    let corrupted = dir.path().join("corrupted.tsbak");
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&corrupted, &bad).unwrap();
    let (code, _, stderr) = restore(target.path(), &corrupted, true);
    assert_eq!(code, 1);
    assert!(stderr.contains("damaged"), "{stderr}");

    let other = dir.path().join("other.tsbak");
    std::fs::write(&other, &original).unwrap();
    let (code, _, stderr) = restore(target.path(), &other, true);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a toki-sync backup"), "{stderr}");

    assert_eq!(std::fs::read(&db).unwrap(), original, "a refused restore must not touch the data file");
    let leftovers: Vec<_> =
        std::fs::read_dir(target.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // With --force a good backup replaces it, and the old file is kept aside.
    let (code, stdout, stderr) = restore(target.path(), &good, true);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stdout.contains("moved to"), "{stdout}");
    let store = Store::open(&db).unwrap();
    assert_eq!(event_count(&store), 500);
    assert!(store.user_by_name("alice").unwrap().is_some());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn backup_endpoint_is_for_admins_only() {
    let server = TestServer::start().await;
    create_user(server.app(), "bob", "bob-password-1", toki_sync::store::users::Role::User);
    let c = server.client();
    let r = c.get("/admin/backup").await;
    assert_eq!(r.status, 401);
    let bob = c.login("bob", "bob-password-1").await["access_token"].as_str().unwrap().to_owned();
    let r = c.get_auth("/admin/backup", &bob).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.error().contains("admin"));
    // The admin gets a stream that is a complete backup.
    let admin = c.admin_token().await;
    let r = c.get_auth("/admin/backup", &admin).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let body = dechunk(&r.body);
    let header = toki_sync::backup::format::verify(&body[..], |_| {}).expect("a valid backup");
    assert_eq!(r.header("x-backup-entries").unwrap(), header.entries.to_string());
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_are_written_and_rotated() {
    let backups = tempfile::tempdir().unwrap();
    let now = toki_sync::store::now_secs();
    // Three older backups (their contents do not matter to rotation) and an unrelated file.
    for days in [30, 20, 10] {
        let name = format!("toki-sync-{}.tsbak", toki_sync::backup::schedule::stamp(now - days * 86400));
        std::fs::write(backups.path().join(name), b"old").unwrap();
    }
    std::fs::write(backups.path().join("keep-me.txt"), b"mine").unwrap();
    let dir = backups.path().to_owned();
    let server = TestServer::start_with(|c| {
        c.backup.dir = Some(dir.clone());
        c.backup.keep = 2;
    })
    .await;
    // The newest is 10 days old, past the 24-hour interval: a backup is due at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let list = loop {
        let list = toki_sync::backup::schedule::backups(backups.path());
        if list.len() == 2 && list.iter().any(|(t, _)| *t >= now) {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "no rotated backup: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(list[0].0 < now - 9 * 86400, "the newest old one is kept: {list:?}");
    let newest = &list[1].1;
    let header = toki_sync::backup::format::verify(std::fs::File::open(newest).unwrap(), |_| {}).unwrap();
    assert!(header.entries > 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(newest).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(backups.path().join("keep-me.txt").exists());
    let names: Vec<_> = std::fs::read_dir(backups.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 3, "no partial files remain: {names:?}");
    drop(server);
}

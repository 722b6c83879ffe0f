//! The load generators run end to end against the real binary (small numbers: this checks that
//! they work and report correctly, not how fast anything is).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn bench_ingest_creates_its_user_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::start(dir.path(), &[("TOKI_ADMIN_PASSWORD", "bench-admin-pw")]);
    for extra in [&[][..], &["--tls", "--tls-ca"][..]] {
        let mut cmd = Command::new(bin());
        cmd.args(["bench", "ingest", "--server", &server.sync.to_string(), "--http", &format!("http://{}", server.http)])
            .args(["--devices", "2", "--batches", "3", "--batch-size", "150", "--json"])
            .args(extra)
            .env("TOKI_BENCH_ADMIN_PASSWORD", "bench-admin-pw");
        if !extra.is_empty() {
            cmd.arg(dir.path().join("tls/cert.pem"));
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["events"], 900);
        assert_eq!(report["errors"], 0);
        assert!(report["events_per_sec"].as_f64().unwrap() > 0.0);
        assert_eq!(report["transport"], if extra.is_empty() { "plaintext" } else { "TLS" });
    }
    // Wrong admin password: a clear failure, not a hang.
    let out = Command::new(bin())
        .args(["bench", "ingest", "--server", &server.sync.to_string(), "--http", &format!("http://{}", server.http)])
        .env("TOKI_BENCH_ADMIN_PASSWORD", "wrong-password")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("login as admin failed (401)"));
    assert!(server.stop().0);
    let (_, out, _) = admin(dir.path(), &["stats", "--json"], None);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["events"], 1800);
    assert_eq!(stats["users"], 3, "admin and one user per run");
}

#[test]
fn bench_seed_fills_a_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["bench", "seed", "--data-dir"])
        .arg(dir.path())
        .args(["--events", "5000", "--users", "2", "--devices-per-user", "2", "--days", "30", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 5000);
    let (_, out, _) = admin(dir.path(), &["stats", "--json"], None);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((stats["events"].as_u64(), stats["devices"].as_u64(), stats["users"].as_u64()), (Some(5000), Some(4), Some(2)));
    // The seeded users can sign in.
    let server = BinServer::start(dir.path(), &[]);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        Client::at(server.http).login("seed-user-1", "seed-password").await;
    });
    assert!(server.stop().0);
}

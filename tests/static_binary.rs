//! Smoke test of the static musl build (`cargo build --release --target
//! x86_64-unknown-linux-musl`), named by `TOKI_SYNC_STATIC_BIN` (tests/run.sh builds it and sets
//! it): it is not a dynamic executable, and it serves: sign in, one sync batch over TLS, a usage
//! query that sees it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::sync_client::*;
use common::*;

fn static_binary() -> Option<PathBuf> {
    match std::env::var_os("TOKI_SYNC_STATIC_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.exists(), "TOKI_SYNC_STATIC_BIN={} does not exist", p.display());
            Some(p)
        }
        None if std::env::var("TOKI_SYNC_FULL_TESTS").is_ok_and(|v| v == "1") => panic!(
            "TOKI_SYNC_STATIC_BIN is not set: tests/run.sh builds target/x86_64-unknown-linux-musl/release/toki-sync and sets it"
        ),
        None => {
            eprintln!("SKIPPED static_binary: set TOKI_SYNC_STATIC_BIN to a static musl build of toki-sync");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_binary_is_static_and_serves() {
    let Some(binary) = static_binary() else { return };
    let ldd = Command::new("ldd").arg(&binary).output().expect("run ldd");
    let said = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    assert!(said.contains("not a dynamic executable") || said.contains("statically linked"), "ldd: {said}");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("toki-sync {}", env!("CARGO_PKG_VERSION"))
    );

    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::start_binary(&binary, dir.path(), &[("TOKI_ADMIN_PASSWORD", "static-admin-pw")]);
    let c = Client::at(server.http);
    let token = c.login("admin", "static-admin-pw").await["access_token"].as_str().unwrap().to_owned();

    let mut sync =
        SyncClient::tls(server.sync, &dir.path().join("tls/cert.pem"), &[&rustls::version::TLS13]).await;
    assert!(matches!(sync.auth(&auth_payload(&token, "static-dev", "claude_code")).await, AuthReply::Ok(_)));
    let now = toki_sync::store::now_ms();
    let items =
        (0..20).map(|i| item(now - 3_600_000 + i * 1000, &format!("s{i}"), 0, [10, 5, 0, 0])).collect();
    sync.batch(&batch("claude_code", items)).await.expect("batch acknowledged");

    let start = now / 1000 - 86_400;
    let r = c.get_auth(&format!("/api/v1/usage?start={start}&end={}", now / 1000 + 60), &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["totals"]["events"], 20, "{v}");
    assert_eq!(v["totals"]["total"], 300, "{v}");
    let (ok, _) = server.stop();
    assert!(ok, "clean stop");
}

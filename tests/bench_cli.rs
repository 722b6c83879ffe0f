//! The load generators run end to end against the real binary (small numbers: this checks that
//! they work and report correctly, not how fast anything is).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// `bench ingest ARGS` against `server`; returns (success, stdout, stderr).
fn bench_ingest(server: &BinServer, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(["bench", "ingest", "--server", &server.sync.to_string()])
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("TOKI_BENCH_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_ingest_creates_its_user_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::start(dir.path(), &[("TOKI_ADMIN_PASSWORD", "bench-admin-pw")]);
    let http = format!("http://{}", server.http);
    let cert = dir.path().join("tls/cert.pem").to_str().unwrap().to_owned();
    let mut created = Vec::new();
    // The first run keeps its user (--keep); the second removes it at the end.
    for extra in [&["--keep"][..], &["--tls", "--tls-ca", &cert][..]] {
        let mut args =
            vec!["--http", &http, "--devices", "2", "--batches", "3", "--batch-size", "150", "--json"];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) =
            bench_ingest(&server, &args, &[("TOKI_BENCH_ADMIN_PASSWORD", "bench-admin-pw")]);
        assert!(ok, "{stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["events"], 900);
        assert_eq!(
            (report["failed_batches"].as_u64(), report["failed_devices"].as_u64()),
            (Some(0), Some(0))
        );
        assert!(report.get("first_error").is_none(), "{report}");
        assert!(report["events_per_sec"].as_f64().unwrap() > 0.0);
        let kept = extra == ["--keep"];
        assert_eq!(report["transport"], if kept { "plaintext" } else { "TLS" });
        let user = report["user"].as_str().unwrap().to_owned();
        if kept {
            assert_eq!(report["removed"], "nothing (--keep)");
            created.push((user, report["access_token"].as_str().unwrap().to_owned()));
        } else {
            assert_eq!(report["removed"], format!("user {user} with its devices and usage"));
            assert!(report.get("access_token").is_none(), "no token for a removed user: {report}");
            let users = block_on(Client::at(server.http).get_auth("/admin/users", &admin_token(&server)));
            assert!(!users.text().contains(&user), "{user} is gone: {}", users.text());
        }
    }
    // The printed user and token are real: the token signs in as that user.
    let (user, token) = &created[0];
    assert!(user.starts_with("bench-"), "{user}");
    let me = block_on(Client::at(server.http).get_auth("/me", token));
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["username"], user.as_str());

    // With --token and --plain, in text: the figures are on one line, and no user is created.
    let (ok, stdout, stderr) = bench_ingest(
        &server,
        &["--token", token, "--plain", "--devices", "1", "--batches", "2", "--batch-size", "50"],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("access token"), "{stdout}");
    assert!(stdout.starts_with("100 events (1 devices x 2 batches x 50) over plaintext in "), "{stdout}");
    let rate: f64 = stdout
        .split_once(" events/s;")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no events/s figure in {stdout:?}"));
    assert!(rate > 0.0, "{stdout}");
    assert!(stdout.trim_end().ends_with("failed batches 0 (devices 0)"), "{stdout}");

    // A token the server refuses: every batch of every device counts as failed, not one per
    // device, and the run fails after printing its report.
    let (ok, stdout, _) = bench_ingest(
        &server,
        &["--token", "not-a-token", "--devices", "2", "--batches", "3", "--batch-size", "10", "--json"],
        &[],
    );
    assert!(!ok);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (report["events"].as_u64(), report["failed_batches"].as_u64(), report["failed_devices"].as_u64()),
        (Some(0), Some(6), Some(2))
    );
    assert!(report["first_error"].as_str().unwrap().contains("AUTH refused"), "{report}");

    // A run that fails after creating its user still removes it.
    let (ok, _, stderr) = bench_ingest(
        &server,
        &["--http", &http, "--tls", "--devices", "1", "--batches", "1"],
        &[("TOKI_BENCH_ADMIN_PASSWORD", "bench-admin-pw")],
    );
    assert!(!ok);
    assert!(stderr.contains("--tls needs --tls-ca FILE or --tls-insecure"), "{stderr}");
    let users = block_on(Client::at(server.http).get_auth("/admin/users", &admin_token(&server))).json();
    assert_eq!(users["users"].as_array().unwrap().len(), 2, "admin and the kept user: {users}");

    // Wrong admin password: a clear failure, not a hang.
    let (ok, _, stderr) =
        bench_ingest(&server, &["--http", &http], &[("TOKI_BENCH_ADMIN_PASSWORD", "wrong-password")]);
    assert!(!ok);
    assert!(stderr.contains("login as admin failed (401)"), "{stderr}");
    assert!(server.stop().0);
    let (_, out, _) = admin(dir.path(), &["stats", "--json"], None);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["events"], 1000, "the kept run's 900 and the --token run's 100");
    assert_eq!(
        (stats["users"].as_u64(), stats["devices"].as_u64()),
        (Some(2), Some(3)),
        "admin and the kept user"
    );
}

fn admin_token(server: &BinServer) -> String {
    let pair = block_on(Client::at(server.http).login("admin", "bench-admin-pw"));
    pair["access_token"].as_str().unwrap().to_owned()
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
    assert_eq!(report["created_users"], serde_json::json!(["seed-user-1", "seed-user-2"]));
    // A second seed of the same file is refused unless --force, which then reuses the accounts.
    let again = |extra: &[&str]| {
        Command::new(bin())
            .args(["bench", "seed", "--data-dir"])
            .arg(dir.path())
            .args(["--events", "10", "--users", "2", "--devices-per-user", "2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = again(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("already exists") && err.contains("--force") && err.contains("seed-password"),
        "{err}"
    );
    let out = again(&["--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("created no accounts"), "{text}");
    let (_, out, _) = admin(dir.path(), &["stats", "--json"], None);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (stats["events"].as_u64(), stats["devices"].as_u64(), stats["users"].as_u64()),
        (Some(5010), Some(4), Some(2))
    );
    // The seeded users can sign in, and `bench query` runs every query against them. The file
    // has no admin, so the server makes one.
    let server = BinServer::start(dir.path(), &[("TOKI_ADMIN_PASSWORD", "seeded-admin-pw")]);
    block_on(Client::at(server.http).login("admin", "seeded-admin-pw"));
    block_on(Client::at(server.http).login("seed-user-1", "seed-password"));
    let out = Command::new(bin())
        .args(["bench", "query", "--http", &format!("http://{}", server.http), "--user", "seed-user-1"])
        .args(["--iterations", "2", "--warmup", "0", "--json", "--utc-offset", "+05:30"])
        .env("TOKI_BENCH_PASSWORD", "seed-password")
        .env_remove("TOKI_BENCH_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "a query failed: {}", String::from_utf8_lossy(&out.stderr));
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 28, "{reports:?}");
    // The dashboard's queries run at the given offset, made the user's own first.
    assert!(String::from_utf8_lossy(&out.stderr).contains("day tier rebuilt at +05:30"));
    assert!(reports.iter().any(|r| r["name"] == "dashboard: calendar, 1 year by day"
        && r["path"].as_str().unwrap().contains("utc_offset=%2B05:30")));
    for r in reports {
        assert_eq!(r["iterations"], 2, "{r}");
        let (p50, p99) = (r["p50_ms"].as_f64().unwrap(), r["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p99 >= p50, "{r}");
        assert!(r["response_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    assert!(reports.iter().any(|r| r["name"] == "usage: 30 days by day, by model"));
    // `bench ingest --user` syncs as an existing (here: seeded) user, and says so in text.
    let out = Command::new(bin())
        .args([
            "bench",
            "ingest",
            "--server",
            &server.sync.to_string(),
            "--http",
            &format!("http://{}", server.http),
        ])
        .args(["--user", "seed-user-2", "--devices", "1", "--batches", "2", "--batch-size", "10"])
        .env("TOKI_BENCH_PASSWORD", "seed-password")
        .env_remove("TOKI_BENCH_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("user seed-user-2; access token "), "{stdout}");
    assert!(stdout.contains("\n20 events (1 devices x 2 batches x 10) over plaintext"), "{stdout}");
    assert!(stdout.contains("\nremoved 1 devices of seed-user-2 with their usage"), "{stdout}");
    assert!(server.stop().0);
    let (_, out, _) = admin(dir.path(), &["stats", "--json"], None);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (stats["events"].as_u64(), stats["devices"].as_u64(), stats["users"].as_u64()),
        (Some(5010), Some(4), Some(3)),
        "the run's device is gone; the admin was added"
    );
}

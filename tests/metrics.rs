//! Prometheus metrics on `metrics.bind`: scraped over a real socket, checked with Debian's
//! `promtool check metrics`, and the counters compared with the traffic this test sent.
//!
//! The counters are process-wide, so this file holds one test (its own process) and compares
//! absolute values.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sync_client::*;
use common::*;

const PROMTOOL: &str = "/usr/bin/promtool";

fn promtool_available() -> bool {
    if std::path::Path::new(PROMTOOL).exists() {
        return true;
    }
    if std::env::var("TOKI_SYNC_FULL_TESTS").is_ok_and(|v| v == "1") {
        panic!("{PROMTOOL} not found (Debian package `prometheus`); tests/run.sh installs it");
    }
    eprintln!(
        "SKIPPED metrics: {PROMTOOL} not found (install the Debian package `prometheus`, or set TOKI_SYNC_FULL_TESTS=1 to make this a failure)"
    );
    false
}

/// `promtool check metrics` on the exposition; panics with its findings unless it is clean.
fn promtool_check(text: &str) {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let findings =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics:\n{findings}\n---\n{text}"
    );
}

/// Samples by their full name with labels, e.g. `toki_sync_ingest_batches_total` or
/// `toki_sync_http_requests_total{endpoint="health",status="200"}`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

async fn scrape(addr: std::net::SocketAddr) -> (String, HashMap<String, f64>) {
    let r = Client::at(addr).get("/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = r.text();
    let s = samples(&text);
    (text, s)
}

fn get(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| panic!("no sample {key}; have: {:#?}", s.keys().collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_and_count_the_traffic() {
    if !promtool_available() {
        return;
    }
    let server = TestServer::start_with(|c| {
        c.metrics.bind = Some("127.0.0.1:0".parse().unwrap());
        c.auth.refresh_reuse_grace_secs = 0;
    })
    .await;
    let metrics = server.server.as_ref().unwrap().metrics_addr.expect("metrics listener");
    let (text, before) = scrape(metrics).await;
    promtool_check(&text);
    assert_eq!(get(&before, "toki_sync_build_info{version=\"0.1.0\"}"), 1.0);
    assert_eq!(get(&before, "toki_sync_ingest_batches_total"), 0.0);
    // The generated certificate is valid until 4096; no ACME, no failures.
    let not_after = server.server.as_ref().unwrap().certs.current().info.not_after;
    assert_eq!(get(&before, "toki_sync_tls_certificate_expiry_timestamp_seconds"), not_after as f64);
    assert_eq!(get(&before, "toki_sync_acme_renewal_failures"), 0.0);

    // HTTP: three health checks, one unknown path, a login, five failed logins (the fifth locks
    // the key) and one refused while locked.
    let c = server.client();
    for _ in 0..3 {
        assert_eq!(c.get("/health").await.status, 200);
    }
    assert_eq!(c.get("/no/such/path").await.status, 404);
    let pair = c.login("admin", ADMIN_PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let r =
            c.post("/login", &serde_json::json!({"username": "admin", "password": "wrong-password"})).await;
        assert_eq!(r.status, 401);
    }
    let r = c.post("/login", &serde_json::json!({"username": "admin", "password": "wrong-password"})).await;
    assert_eq!(r.status, 429);

    // A refresh token used again after the grace time: a reuse detection.
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(c.post("/token/refresh", &serde_json::json!({"refresh_token": refresh})).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.post("/token/refresh", &serde_json::json!({"refresh_token": refresh})).await.status, 401);

    // Sync: a plaintext claude_code session with three batches of 10 and one resend, a TLS
    // codex session with one batch of 5, and a connection that sends an unknown frame type.
    let mut plain = SyncClient::plain(server.sync).await;
    assert!(matches!(plain.auth(&auth_payload(&token, "m-dev-1", "claude_code")).await, AuthReply::Ok(_)));
    let batches: Vec<_> = (0..3)
        .map(|b| {
            let items = (0..10)
                .map(|i| item(1_760_000_000_000 + (b * 10 + i) * 1000, &format!("m{b}-{i}"), 0, [1, 2, 0, 0]))
                .collect();
            batch("claude_code", items)
        })
        .collect();
    for b in &batches {
        plain.batch(b).await.unwrap();
    }
    plain.batch(&batches[2]).await.unwrap();
    let cert = server.server.as_ref().unwrap().tls_certificate.clone();
    let mut tls = SyncClient::tls(server.sync, &cert, &[&rustls::version::TLS13]).await;
    assert!(matches!(tls.auth(&auth_payload(&token, "m-dev-2", "codex")).await, AuthReply::Ok(_)));
    let items =
        (0..5).map(|i| item(1_760_000_000_000 + i * 1000, &format!("c{i}"), 0, [1, 1, 0, 0])).collect();
    tls.batch(&batch("codex", items)).await.unwrap();
    let mut garbage = SyncClient::plain(server.sync).await;
    garbage.send(0x7777, b"hello").await;
    assert!(garbage.closed_by_server().await);

    let (text, after) = scrape(metrics).await;
    promtool_check(&text);
    assert_eq!(get(&after, "toki_sync_ingest_batches_total"), 5.0);
    assert_eq!(get(&after, "toki_sync_ingest_events_total"), 45.0);
    assert_eq!(get(&after, "toki_sync_ingest_stored_events_total{outcome=\"inserted\"}"), 35.0);
    assert_eq!(get(&after, "toki_sync_ingest_stored_events_total{outcome=\"duplicate\"}"), 10.0);
    let commits = get(&after, "toki_sync_ingest_commit_duration_seconds_count");
    assert!((1.0..=5.0).contains(&commits), "{commits}");
    assert_eq!(get(&after, "toki_sync_ingest_group_batches_sum"), 5.0);
    assert_eq!(
        get(&after, "toki_sync_sync_sessions_total{provider=\"claude_code\",transport=\"plaintext\"}"),
        1.0
    );
    assert_eq!(get(&after, "toki_sync_sync_sessions_total{provider=\"codex\",transport=\"tls\"}"), 1.0);
    assert_eq!(get(&after, "toki_sync_sync_sessions_active"), 2.0);
    assert_eq!(get(&after, "toki_sync_sync_rejected_frames_total{reason=\"unknown_type\"}"), 1.0);
    assert_eq!(get(&after, "toki_sync_http_requests_total{endpoint=\"health\",status=\"200\"}"), 3.0);
    assert_eq!(get(&after, "toki_sync_http_requests_total{endpoint=\"not_found\",status=\"404\"}"), 1.0);
    assert_eq!(get(&after, "toki_sync_http_requests_total{endpoint=\"login\",status=\"200\"}"), 1.0);
    assert_eq!(get(&after, "toki_sync_http_requests_total{endpoint=\"login\",status=\"401\"}"), 5.0);
    assert_eq!(get(&after, "toki_sync_http_requests_total{endpoint=\"login\",status=\"429\"}"), 1.0);
    assert_eq!(get(&after, "toki_sync_http_request_duration_seconds_count{endpoint=\"login\"}"), 7.0);
    assert_eq!(get(&after, "toki_sync_auth_lockouts_total"), 1.0);
    assert_eq!(get(&after, "toki_sync_auth_refresh_token_reuse_total"), 1.0);
    assert!(get(&after, "toki_sync_data_file_bytes") > 0.0);
    // Usage is queued for VictoriaMetrics even before one is configured: one hourly bucket per
    // device, and the oldest is the hour of the events sent above.
    assert_eq!(get(&after, "toki_sync_vm_outbox_buckets"), 2.0);
    let age = get(&after, "toki_sync_vm_outbox_oldest_age_seconds");
    let expected = (toki_sync::store::now_secs() - 1_760_000_000 / 3600 * 3600) as f64;
    assert!((age - expected).abs() < 60.0, "outbox age {age}, expected about {expected}");

    // Only /metrics is served there, and the API port does not expose it.
    assert_eq!(Client::at(metrics).get("/").await.status, 404);
    assert_eq!(Client::at(metrics).raw("POST", "/metrics", &[], Some(b"")).await.status, 405);
    assert_eq!(c.get("/metrics").await.status, 404);
}

//! ACME against a real CA on loopback (Debian's `pebble`, Let's Encrypt's test server), which
//! validates every challenge against our own listeners: TLS-ALPN-01 on the HTTPS port, HTTP-01
//! on the plain port. Then the toki client's first call over HTTPS with pebble's root trusted,
//! and the sync port presenting the same certificate.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::pebble::{self, Pebble};
use common::tls::{Https, TestCa, served_fingerprint};
use common::{TestServer, eventually, test_config};
use toki_sync::config::{AcmeChallenge, Config};

const NAME: &str = "toki.test";

/// Binds the listeners first: pebble must know the ports it validates against.
async fn start(
    dir: tempfile::TempDir,
    challenge: AcmeChallenge,
    adjust: impl FnOnce(&mut Config),
) -> (TestServer, Pebble) {
    let mut cfg = test_config(dir.path());
    cfg.server.https_port = Some(0);
    let listeners = toki_sync::Listeners::bind(&cfg).unwrap();
    let http_port = listeners.http.local_addr().unwrap().port();
    let https_port = listeners.https.as_ref().unwrap().local_addr().unwrap().port();
    let pebble = Pebble::start(http_port, https_port);
    cfg.acme.domains = vec![NAME.into()];
    cfg.acme.email = Some("ops@toki.test".into());
    cfg.acme.directory_url = pebble.directory_url.clone();
    cfg.acme.ca_file = Some(pebble.api_ca_file.clone());
    cfg.acme.challenge = challenge;
    adjust(&mut cfg);
    let server = toki_sync::launch(cfg, listeners, std::future::pending()).await.expect("launch");
    (TestServer { addr: server.http_addr, sync: server.sync_addr, server: Some(server), dir }, pebble)
}

fn https(s: &TestServer) -> std::net::SocketAddr {
    s.server.as_ref().unwrap().https_addr.unwrap()
}

async fn tls_info(s: &TestServer) -> serde_json::Value {
    let admin = s.client().admin_token().await;
    s.client().get_auth("/admin/server-info", &admin).await.json()["tls"].clone()
}

/// Waits until both TLS listeners present a certificate for NAME that pebble issued.
async fn wait_for_issued(s: &TestServer, roots: &rustls::RootCertStore) -> String {
    let issued = eventually(Duration::from_secs(90), || async {
        served_fingerprint(https(s), NAME, roots).await.is_ok()
    })
    .await;
    assert!(issued, "no certificate from pebble on the HTTPS port; server-info says {}", tls_info(s).await);
    let on_https = served_fingerprint(https(s), NAME, roots).await.unwrap();
    assert_eq!(
        served_fingerprint(s.sync, NAME, roots).await.unwrap(),
        on_https,
        "the sync port presents it too"
    );
    on_https
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_certificate_is_obtained_over_tls_alpn_01_and_served_on_https_and_the_sync_port() {
    if !pebble::present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (mut s, pebble) = start(dir, AcmeChallenge::TlsAlpn01, |_| {}).await;
    let roots = pebble.issuing_roots();
    let fingerprint = wait_for_issued(&s, &roots).await;

    // The toki client's first call, over HTTPS, trusting only the CA's root.
    let r = Https::at(https(&s), NAME, &roots).request(false, "POST", "/device/code", &[], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["user_code"].is_string());
    let r = Https::at(https(&s), NAME, &roots).request(true, "GET", "/health", &[], b"").await;
    assert_eq!((r.status, r.alpn.as_deref()), (200, Some(&b"h2"[..])));

    let info = tls_info(&s).await;
    assert_eq!(info["source"], "acme", "{info}");
    assert_eq!(info["names"], serde_json::json!([NAME]));
    assert_eq!(info["acme"]["state"], "waiting", "{info}");
    assert!(info["acme"]["last_success"].is_string() && info["acme"]["next_attempt"].is_string(), "{info}");

    // The account key and the certificate are kept, readable by the owner only.
    let acme = data.join("acme");
    assert_eq!(mode(&acme), 0o700);
    let files: Vec<_> = std::fs::read_dir(&acme).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert!(files.iter().any(|f| f.file_name().unwrap().to_str().unwrap().starts_with("account-")));

    // Restarted, the stored certificate is served from the first connection, with no new order.
    s.stop().await;
    let mut cfg = test_config(&data);
    cfg.server.https_port = Some(0);
    cfg.acme.domains = vec![NAME.into()];
    cfg.acme.directory_url = pebble.directory_url.clone();
    cfg.acme.ca_file = Some(pebble.api_ca_file.clone());
    let listeners = toki_sync::Listeners::bind(&cfg).unwrap();
    let server = toki_sync::launch(cfg, listeners, std::future::pending()).await.unwrap();
    assert_eq!(server.tls_fingerprint, fingerprint);
    let https_addr = server.https_addr.unwrap();
    assert_eq!(served_fingerprint(https_addr, NAME, &roots).await.unwrap(), fingerprint);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_certificate_due_within_30_days_is_renewed_over_http_01_without_a_restart() {
    if !pebble::present() {
        return;
    }
    // A 90-day certificate from another CA with 10 days left: due for renewal.
    let old_ca = TestCa::new("previous CA");
    let due = old_ca.issue(&[NAME], 80, 10);
    let dir = tempfile::tempdir().unwrap();
    let acme = dir.path().join("acme");
    std::fs::create_dir_all(&acme).unwrap();
    std::fs::write(acme.join("cert.pem"), &due.cert_pem).unwrap();
    std::fs::write(acme.join("key.pem"), &due.key_pem).unwrap();
    let (s, pebble) = start(dir, AcmeChallenge::Http01, |c| {
        c.server.redirect_http_to_https = true;
    })
    .await;
    assert_eq!(
        s.server.as_ref().unwrap().tls_fingerprint,
        due.fingerprint,
        "the stored certificate is served meanwhile"
    );
    let renewed = wait_for_issued(&s, &pebble.issuing_roots()).await;
    assert_ne!(renewed, due.fingerprint);
    let info = tls_info(&s).await;
    assert_eq!(
        (info["source"].as_str(), info["acme"]["failures"].as_u64()),
        (Some("acme"), Some(0)),
        "{info}"
    );
    // The new pair replaced the old one on disk.
    let stored = std::fs::read_to_string(s.dir.path().join("acme/cert.pem")).unwrap();
    assert_ne!(stored, due.cert_pem);
}

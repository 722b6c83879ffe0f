//! The HTTPS listener over real sockets: HTTP/2 and HTTP/1.1 by ALPN with a configured
//! certificate, the same certificate on the sync port, reloading changed files without a
//! restart, the plain port's redirect, and an ACME renewal that fails and keeps the old
//! certificate. The ACME happy paths against a real CA are in `acme.rs`.

mod common;

use std::time::Duration;

use common::tls::{Https, TestCa, roots, served_fingerprint};
use common::{TestServer, eventually};
use serde_json::Value;

const NAME: &str = "toki.test";

async fn https_server(adjust: impl FnOnce(&mut toki_sync::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.server.https_port = Some(0);
        adjust(c);
    })
    .await
}

fn https_addr(s: &TestServer) -> std::net::SocketAddr {
    s.server.as_ref().unwrap().https_addr.expect("https listener")
}

async fn server_info(s: &TestServer) -> Value {
    let admin = s.client().admin_token().await;
    let r = s.client().get_auth("/admin/server-info", &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn https_speaks_http2_and_http1_and_the_sync_port_presents_the_same_certificate_reloaded_on_change() {
    let ca = TestCa::new("test CA");
    let trust = roots(&ca.pem);
    let first = ca.issue(&[NAME, "127.0.0.1"], 1, 90);
    let certs_dir = tempfile::tempdir().unwrap();
    let (cert, key) = (certs_dir.path().join("cert.pem"), certs_dir.path().join("key.pem"));
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let s = https_server(|c| {
        c.tls.cert_file = Some(cert.clone());
        c.tls.key_file = Some(key.clone());
    })
    .await;
    let https = https_addr(&s);

    // HTTP/2, chosen by ALPN, serves the API with our headers, HSTS included.
    let r = Https::at(https, NAME, &trust).request(true, "GET", "/health", &[], b"").await;
    assert_eq!(r.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(r.status, 200);
    assert!(r.headers.get("strict-transport-security").is_some(), "{:?}", r.headers);
    assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
    // The toki client's first call, over HTTP/1.1 (its body-less POST).
    let r = Https::at(https, NAME, &trust).request(false, "POST", "/device/code", &[], b"").await;
    assert_eq!(r.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["device_code"].is_string());
    // Errors keep their form on HTTP/2.
    let r = Https::at(https, NAME, &trust).request(true, "GET", "/api/v1/nothing-here", &[], b"").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    // A signed-in call over HTTP/2.
    let login = br#"{"username":"admin","password":"admin-password-1"}"#;
    let r = Https::at(https, NAME, &trust)
        .request(true, "POST", "/login", &[("content-type", "application/json")], login)
        .await;
    assert_eq!(r.status, 200);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let r =
        Https::at(https, NAME, &trust).request(true, "GET", "/me", &[("authorization", &bearer)], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["username"], "admin");

    assert_eq!(served_fingerprint(https, NAME, &trust).await.unwrap(), first.fingerprint);
    assert_eq!(served_fingerprint(s.sync, NAME, &trust).await.unwrap(), first.fingerprint);
    let info = server_info(&s).await;
    assert_eq!(info["tls"]["source"], "files");
    assert_eq!(info["tls"]["fingerprint"], first.fingerprint.as_str());

    // A renewal by another tool: the certificate is written first (with the old key it does not
    // load, and the old pair stays served), then the key.
    let second = ca.issue(&[NAME, "127.0.0.1"], 1, 90);
    std::fs::write(&cert, &second.cert_pem).unwrap();
    tokio::time::sleep(toki_sync::tls::reload::POLL * 2).await;
    assert_eq!(
        served_fingerprint(https, NAME, &trust).await.unwrap(),
        first.fingerprint,
        "a mismatched pair is not served"
    );
    std::fs::write(&key, &second.key_pem).unwrap();
    let both = || async {
        served_fingerprint(https, NAME, &trust).await.ok() == Some(second.fingerprint.clone())
            && served_fingerprint(s.sync, NAME, &trust).await.ok() == Some(second.fingerprint.clone())
    };
    assert!(eventually(Duration::from_secs(20), both).await, "the new certificate is served on both ports");
    assert_eq!(server_info(&s).await["tls"]["fingerprint"], second.fingerprint.as_str());

    // Garbage instead of a handshake costs a closed connection, nothing more.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(https).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await.expect("closed");
    }
    let r = Https::at(https, NAME, &trust).request(false, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn plain_http_redirects_to_https_but_loopback_forwarded_https_and_challenges_are_served() {
    let s = https_server(|c| {
        c.server.redirect_http_to_https = true;
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let port = https_addr(&s).port();
    let client = s.client();
    // From the network (as a trusted proxy reports it): 308 to the same path on HTTPS.
    let from_net = ("X-Forwarded-For", "203.0.113.7");
    // (The test client names the server by address in its Host header.)
    let r = client.raw("GET", "/api/v1/usage/summary?days=7", &[from_net], None).await;
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://127.0.0.1:{port}/api/v1/usage/summary?days=7").as_str())
    );
    assert!(r.json()["error"].is_string());
    let r = client.raw("POST", "/login", &[from_net], Some(b"{}")).await;
    assert_eq!(r.status, 308, "a POST keeps its method with 308");
    // A proxy that terminated TLS itself, and loopback clients, are served.
    let r = client.raw("GET", "/health", &[from_net, ("X-Forwarded-Proto", "https")], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(client.get("/health").await.status, 200);
    // ACME HTTP-01 challenges are never redirected; an unknown token is a 404.
    let r = client.raw("GET", "/.well-known/acme-challenge/nope", &[from_net], None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no such ACME challenge");
}

#[tokio::test]
async fn with_external_url_the_redirect_goes_there() {
    let s = https_server(|c| {
        c.server.redirect_http_to_https = true;
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.server.external_url = Some("https://toki.example.com".into());
    })
    .await;
    let r = s.client().raw("GET", "/device?x=1", &[("X-Forwarded-For", "198.51.100.1")], None).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://toki.example.com/device?x=1"));
}

#[tokio::test]
async fn a_failed_acme_renewal_keeps_the_current_certificate_and_waits_before_retrying() {
    // A 90-day certificate that is due (it expires in 10 days), and a CA that cannot be reached.
    let ca = TestCa::new("old CA");
    let trust = roots(&ca.pem);
    let due = ca.issue(&[NAME], 80, 10);
    let dir = tempfile::tempdir().unwrap();
    let acme_dir = dir.path().join("acme");
    std::fs::create_dir_all(&acme_dir).unwrap();
    std::fs::write(acme_dir.join("cert.pem"), &due.cert_pem).unwrap();
    std::fs::write(acme_dir.join("key.pem"), &due.key_pem).unwrap();
    let closed = common::oidc::free_port();
    let mut cfg = common::test_config(dir.path());
    cfg.server.https_port = Some(0);
    cfg.acme.domains = vec![NAME.into()];
    cfg.acme.directory_url = format!("https://127.0.0.1:{closed}/dir");
    let s = TestServer::start_in(dir, cfg).await;
    let https = https_addr(&s);
    assert_eq!(
        s.server.as_ref().unwrap().tls_fingerprint,
        due.fingerprint,
        "the stored certificate is served from the start"
    );

    let mut info = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut failed = false;
    while !failed && std::time::Instant::now() < deadline {
        info = server_info(&s).await["tls"].clone();
        failed = info["acme"]["state"] == "retrying";
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed, "{info}");
    assert_eq!(info["source"], "acme");
    assert_eq!(info["acme"]["failures"], 1);
    assert!(info["acme"]["last_error"].as_str().unwrap().contains("127.0.0.1"), "{info}");
    let next = time::OffsetDateTime::parse(
        info["acme"]["next_attempt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = next - time::OffsetDateTime::now_utc();
    assert!(wait > time::Duration::seconds(90) && wait <= time::Duration::seconds(120), "{wait}");
    assert_eq!(served_fingerprint(https, NAME, &trust).await.unwrap(), due.fingerprint);
    assert_eq!(served_fingerprint(s.sync, NAME, &trust).await.unwrap(), due.fingerprint);
}

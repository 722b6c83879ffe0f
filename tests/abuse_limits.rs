//! Issue 16, items 2, 3 and 5-8, over real sockets: query caps, refresh lockout by token family,
//! bounded password hashing, registration success limits, IPv6 /64 grouping, case-insensitive
//! `Bearer`, and JSON bodies that must say `Content-Type: application/json`.

mod common;

use common::*;
use serde_json::json;
use toki_sync::store::users::Role;

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The probe's shape: 240 `=~` filters in 4,086 bytes.
fn probe_query() -> String {
    format!("usage{{{}}}", vec![r#"model=~"\\w{20}""#; 240].join(","))
}

fn get_bytes(path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn heavy_toki_queries_are_refused_and_the_server_stays_responsive() {
    let s = TestServer::start().await;
    let c = s.client();
    create_user(s.app(), "quinn", "user-password-1", Role::User);
    let token = c.login("quinn", "user-password-1").await["access_token"].as_str().unwrap().to_owned();
    let probe = probe_query();
    assert!(probe.len() <= 4096, "{}", probe.len());
    let path = format!("/api/v1/toki/query?query={}", enc(&probe));
    let r = c.get_auth(&path, &token).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("exceeds size limit"), "{}", r.error());
    let many = format!("usage{{{}}}", vec![r#"model=~"a.*""#; 240].join(","));
    let r = c.get_auth(&format!("/api/v1/toki/query?query={}", enc(&many)), &token).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("too many regex filters"), "{}", r.error());

    // Sixteen at once, with /health among them: every query is refused, /health answers.
    let mut requests: Vec<Vec<u8>> = (0..16).map(|_| get_bytes(&path, &token)).collect();
    requests.push(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec());
    let answers = simultaneously(s.addr, requests).await;
    let (health, queries) = answers.split_last().unwrap();
    assert_eq!(health.status, 200);
    for q in queries {
        // 400 for the filters, or 429/503 when the bounded query queue is full: never a stall.
        assert!(matches!(q.status, 400 | 429 | 503), "{} {}", q.status, q.text());
        if q.status != 400 {
            assert!(q.header("retry-after").is_some());
        }
    }
    assert!(queries.iter().filter(|q| q.status == 400).count() >= 4, "the per-address share runs");

    // The heaviest query the caps allow (8 regex filters), sixteen at once from one address,
    // with /health and a login among them: each query is answered or refused with Retry-After
    // (at most 4 per address run or wait), /health and the login answer.
    let heavy = format!(
        "sum by (session) (usage{{{}}})",
        [r#"model=~"(claude|gpt|gemini)-[a-z0-9.-]{1,40}""#; 8].join(",")
    );
    let path = format!("/api/v1/toki/query?query={}", enc(&heavy));
    let mut requests: Vec<Vec<u8>> = (0..16).map(|_| get_bytes(&path, &token)).collect();
    requests.push(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec());
    requests.push(post_bytes("/login", None, &json!({"username": "quinn", "password": "user-password-1"})));
    let answers = simultaneously(s.addr, requests).await;
    let (queries, others) = answers.split_at(16);
    assert_eq!((others[0].status, others[1].status), (200, 200), "/health and /login answer");
    for q in queries {
        assert!(matches!(q.status, 200 | 429 | 503), "{} {}", q.status, q.text());
        if q.status != 200 {
            assert!(q.header("retry-after").is_some());
        }
    }
    assert!(queries.iter().filter(|q| q.status == 200).count() >= 4, "the address's share runs to the end");

    // Within the caps, regex queries still work; a regex too big to compile is a clear 400.
    let ok = r#"sum by (model) (usage{model=~"claude-.*", model!~"gpt-.*"})"#;
    let r = c.get_auth(&format!("/api/v1/toki/query?query={}", enc(ok)), &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let big = r#"usage{model=~"\\w{200}"}"#;
    let r = c.get_auth(&format!("/api/v1/toki/query?query={}", enc(big)), &token).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("invalid regex"), "{}", r.error());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_refreshes_are_not_locked_out_and_garbage_locks_only_itself() {
    let s = TestServer::start().await;
    let c = s.client();
    create_user(s.app(), "rita", "user-password-1", Role::User);
    let pair = c.login("rita", "user-password-1").await;
    let body = json!({"refresh_token": pair["refresh_token"]});
    let answers =
        simultaneously(s.addr, (0..10).map(|_| post_bytes("/token/refresh", None, &body)).collect()).await;
    for r in &answers {
        assert_eq!(r.status, 200, "a parallel refresh of a valid token failed: {}", r.text());
    }

    // Garbage from this address locks the address key only.
    for _ in 0..5 {
        assert_eq!(c.post("/token/refresh", &json!({"refresh_token": "garbage"})).await.status, 401);
    }
    let locked = c.post("/token/refresh", &json!({"refresh_token": "garbage"})).await;
    assert_eq!(locked.status, 429);
    assert!(locked.header("retry-after").is_some());
    let other = c.login("rita", "user-password-1").await;
    let r = c.post("/token/refresh", &json!({"refresh_token": other["refresh_token"]})).await;
    assert_eq!(r.status, 200, "a valid token behind the same address is locked out: {}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn password_checks_are_bounded_per_address() {
    let s = TestServer::start().await;
    let c = s.client();
    create_user(s.app(), "sam", "user-password-1", Role::User);
    let requests = (0..40)
        .map(|i| {
            post_bytes("/login", None, &json!({"username": format!("ghost{i}"), "password": "whatever-pass"}))
        })
        .collect();
    let answers = simultaneously(s.addr, requests).await;
    let busy = answers.iter().filter(|r| r.status == 429).count();
    for r in &answers {
        assert!(matches!(r.status, 401 | 429), "{} {}", r.status, r.text());
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
        }
    }
    assert!(busy >= 20, "one address got {} of 40 parallel password checks queued", 40 - busy);
    // Refused checks are no lockout strikes, and a real login works right after.
    assert_eq!(
        c.post("/login", &json!({"username": "sam", "password": "user-password-1"})).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn successful_registrations_are_limited_per_address() {
    let s = TestServer::start().await;
    let c = s.client();
    let admin = c.admin_token().await;
    let r = c
        .send_auth("PATCH", "/admin/settings", &admin, Some(&json!({"registration_mode": "approval"})))
        .await;
    assert_eq!(r.status, 200);
    for i in 0..5 {
        let r = c
            .post("/register", &json!({"username": format!("newbie{i}"), "password": "strong-password"}))
            .await;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let r = c.post("/register", &json!({"username": "newbie5", "password": "strong-password"})).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let pending = c.get_auth("/admin/pending", &admin).await.json();
    assert_eq!(pending["pending"].as_array().map(Vec::len), Some(5), "{pending}");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_address_limits_group_ipv6_by_64() {
    // Behind a trusted proxy the forwarded address counts; IPv6 clients count by /64.
    let s = TestServer::start_with(|c| c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let c = s.client();
    let wrong = br#"{"username":"admin","password":"wrong-password"}"#;
    for i in 1..=5 {
        let xff = format!("2001:db8:1:2::{i:x}");
        let r = c.raw("POST", "/login", &[("X-Forwarded-For", &xff), JSON], Some(wrong)).await;
        assert_eq!(r.status, 401);
    }
    let same =
        c.raw("POST", "/login", &[("X-Forwarded-For", "2001:db8:1:2:ffff::1"), JSON], Some(wrong)).await;
    assert_eq!(same.status, 429, "another address of the same /64 is the same client");
    let other = c.raw("POST", "/login", &[("X-Forwarded-For", "2001:db8:1:3::1"), JSON], Some(wrong)).await;
    assert_eq!(other.status, 401, "another /64 is another client");

    // Device codes in progress: 20 per address group.
    for i in 1..=20 {
        let xff = format!("2001:db8:9:9::{i:x}");
        assert_eq!(c.raw("POST", "/device/code", &[("X-Forwarded-For", &xff)], None).await.status, 200);
    }
    let r = c.raw("POST", "/device/code", &[("X-Forwarded-For", "2001:db8:9:9:abcd::1")], None).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let r = c.raw("POST", "/device/code", &[("X-Forwarded-For", "2001:db8:9:a::1")], None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_is_case_insensitive_and_json_bodies_need_their_content_type() {
    let s = TestServer::start().await;
    let c = s.client();
    let token = c.admin_token().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let h = format!("{scheme} {token}");
        let r = c.raw("GET", "/me", &[("Authorization", &h)], None).await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }

    // A cross-origin form or fetch can send text/plain (or no type) without a preflight: such
    // a login is refused before the password is checked, so it burns no attempts.
    let body = br#"{"username":"admin","password":"wrong-password"}"#;
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        for _ in 0..6 {
            let headers: Vec<(&str, &str)> = ct.map(|t| ("Content-Type", t)).into_iter().collect();
            let r = c.raw("POST", "/login", &headers, Some(body)).await;
            assert_eq!(r.status, 415, "{ct:?}: {}", r.text());
            assert!(r.error().contains("application/json"));
        }
    }
    assert_eq!(
        c.post("/login", &json!({"username": "admin", "password": ADMIN_PASSWORD})).await.status,
        200,
        "no attempt was counted"
    );
    let charset = br#"{"username":"admin","password":"admin-password-1"}"#;
    let r =
        c.raw("POST", "/login", &[("Content-Type", "application/json; charset=utf-8")], Some(charset)).await;
    assert_eq!(r.status, 200);
    // Bodiless POSTs stay allowed (the toki client's /device/code).
    assert_eq!(c.raw("POST", "/device/code", &[], None).await.status, 200);
}

//! The device-code flow over real sockets, at the toki client's paths (`/device/...`) and the
//! reference paths (`/auth/device/...`): a test plays the CLI (code, poll) and the browser
//! (lookup, approve or deny).

mod common;

use common::*;
use serde_json::{Value, json};
use toki_sync::auth::device_flow::USER_CODE_ALPHABET as ALPHABET;
use toki_sync::store::device_codes::{CodeStatus, DeviceCode, ip_bytes};
use toki_sync::store::devices::AuthDevice;
use toki_sync::store::now_secs;
use toki_sync::store::users::Role;

/// `POST /device/code` exactly as the toki client sends it: no body, no Content-Type, no length.
async fn request_code(c: &Client) -> Value {
    let r = c.raw("POST", "/device/code", &[("User-Agent", "ureq/2.12.1"), ("Accept", "*/*")], None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn poll(c: &Client, path: &str, body: &Value) -> Resp {
    c.post(path, body).await
}

fn assert_flow_error(r: &Resp, status: u16, error: &str) {
    assert_eq!((r.status, r.json()["error"].as_str()), (status, Some(error)), "{}", r.text());
}

async fn signed_in(s: &TestServer, name: &str) -> String {
    create_user(s.app(), name, "user-password-1", Role::User);
    s.client().login(name, "user-password-1").await["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_path_full_flow_registers_the_device() {
    let s = TestServer::start().await;
    let c = s.client();
    let code = request_code(&c).await;
    let device_code = code["device_code"].as_str().unwrap().to_owned();
    let user_code = code["user_code"].as_str().unwrap().to_owned();
    assert_eq!(device_code.len(), 43, "at least 128 bits, base64url");
    assert!(device_code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(user_code.len(), 9);
    assert!(user_code.chars().enumerate().all(|(i, ch)| if i == 4 {
        ch == '-'
    } else {
        "ABCDEFGHJKMNPQRSTUVWXYZ23456789".contains(ch)
    }));
    assert_eq!(code["verification_uri"], "/device");
    assert_eq!(code["verification_url"], "/device");
    assert_eq!(code["verification_uri_complete"], format!("/device?device={user_code}"));
    assert_eq!((code["expires_in"].as_u64(), code["interval"].as_u64()), (Some(900), Some(5)));

    let body =
        json!({"device_code": device_code, "device_key": "6f1c0e7e-key-1", "device_name": "macbook-pro"});
    assert_flow_error(&poll(&c, "/device/token", &body).await, 400, "authorization_pending");
    let fast = poll(&c, "/device/token", &body).await;
    assert_flow_error(&fast, 400, "slow_down");
    assert_eq!(fast.json()["interval"], 10);

    // The browser: sign in, look the code up (typed loosely), approve.
    let token = signed_in(&s, "alice").await;
    let typed = user_code.to_lowercase().replace('-', " ");
    let info = c.send_auth("POST", "/device/lookup", &token, Some(&json!({"user_code": typed}))).await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(info.json()["user_code"], user_code.as_str());
    assert_eq!(info.json()["device_name"], "macbook-pro", "the name the client sent with its poll");
    let compact = user_code.replace('-', "");
    let ok = c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": compact}))).await;
    assert_eq!((ok.status, ok.json()), (200, json!({"verified": true, "status": "approved"})));
    let again = c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": user_code}))).await;
    assert_eq!((again.status, again.error().as_str()), (409, "code already approved"));
    let looked = c.send_auth("POST", "/device/lookup", &token, Some(&json!({"user_code": user_code}))).await;
    assert_eq!((looked.status, looked.error().as_str()), (409, "code already approved"));

    // The CLI's next poll gets alice's tokens; the device is registered under alice.
    let done = poll(&c, "/device/token", &body).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let pair = done.json();
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 3600);
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(c.get_auth("/me", access).await.json()["username"], "alice");
    let devices = c.get_auth("/me/devices", access).await.json();
    let list = devices["devices"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["device_key"], "6f1c0e7e-key-1");
    assert_eq!(list[0]["name"], "macbook-pro");
    assert!(list[0]["last_seen_at"].is_null(), "not synced yet");

    // Single use.
    assert_flow_error(&poll(&c, "/device/token", &body).await, 400, "expired_token");
    // The approver reloads the page after the CLI signed in: still "already approved", never an
    // unknown code, so no lockout strike however often (the limit is 5).
    for _ in 0..6 {
        for path in ["/device/approve", "/device/lookup"] {
            let r = c.send_auth("POST", path, &token, Some(&json!({"user_code": user_code}))).await;
            assert_eq!((r.status, r.error().as_str()), (409, "code already approved"), "{path}");
        }
    }
    let next = request_code(&c).await;
    let r =
        c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": next["user_code"]}))).await;
    assert_eq!(r.status, 200, "not locked out: {}", r.text());
    let refreshed = c.post("/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(refreshed.status, 200, "the device grant's refresh token works");

    // The sync AUTH of that machine finds the same device.
    let alice = s.app().store.user_by_name("alice").unwrap().unwrap();
    let d = sync_device(s.app(), alice.id, "6f1c0e7e-key-1", "macbook-pro", now_secs());
    assert_eq!(d.uuid.to_string(), list[0]["id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn reference_path_pending_is_428_and_verify_approves() {
    let s = TestServer::start().await;
    let c = s.client();
    let r = c.post("/auth/device/code", &json!({"device_name": "ci-runner"})).await;
    assert_eq!(r.status, 200);
    let code = r.json();
    let body = json!({"device_code": code["device_code"]});
    assert_flow_error(&poll(&c, "/auth/device/token", &body).await, 428, "authorization_pending");
    assert_flow_error(&poll(&c, "/auth/device/token", &body).await, 400, "slow_down");

    let token = signed_in(&s, "bob").await;
    let info =
        c.send_auth("POST", "/device/lookup", &token, Some(&json!({"user_code": code["user_code"]}))).await;
    assert_eq!(info.json()["device_name"], "ci-runner", "the name from the code request");
    let v = c
        .send_auth("POST", "/auth/device/verify", &token, Some(&json!({"user_code": code["user_code"]})))
        .await;
    assert_eq!((v.status, v.json()["verified"].as_bool()), (200, Some(true)));
    // Once approved, the answer does not wait for the polling interval.
    let done = poll(&c, "/auth/device/token", &body).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let access = done.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(c.get_auth("/me", &access).await.json()["username"], "bob");
    let devices = c.get_auth("/me/devices", &access).await.json();
    assert_eq!(devices, json!({"devices": []}), "no device_key: the device appears with its first sync");
    assert_flow_error(&poll(&c, "/auth/device/token", &body).await, 400, "expired_token");
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_unknown_and_expired_codes() {
    let s = TestServer::start().await;
    let c = s.client();
    let token = signed_in(&s, "carol").await;

    let code = request_code(&c).await;
    let body = json!({"device_code": code["device_code"], "device_key": "k", "device_name": "n"});
    let deny = c
        .send_auth(
            "POST",
            "/device/approve",
            &token,
            Some(&json!({"user_code": code["user_code"], "deny": true})),
        )
        .await;
    assert_eq!((deny.status, deny.json()), (200, json!({"verified": true, "status": "denied"})));
    for path in ["/device/token", "/auth/device/token"] {
        assert_flow_error(&poll(&c, path, &body).await, 400, "access_denied");
    }
    let late =
        c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": code["user_code"]}))).await;
    assert_eq!((late.status, late.error().as_str()), (409, "code already denied"));
    let looked =
        c.send_auth("POST", "/device/lookup", &token, Some(&json!({"user_code": code["user_code"]}))).await;
    assert_eq!((looked.status, looked.error().as_str()), (409, "code already denied"));
    let carol = s.app().store.user_by_name("carol").unwrap().unwrap();
    assert!(s.app().store.devices(Some(carol.id)).unwrap().is_empty(), "a denied request registers nothing");

    for path in ["/device/token", "/auth/device/token"] {
        assert_flow_error(
            &poll(&c, path, &json!({"device_code": "never-issued"})).await,
            400,
            "expired_token",
        );
    }

    // An expired code (made directly in the store with a past expiry).
    let device_code = "an-expired-device-code-for-this-test-only-x";
    let now = now_secs();
    let rec = DeviceCode {
        user_code: "WDJB-MJHT".into(),
        created_at: now - 1000,
        expires_at: now - 100,
        ..rec_template(now)
    };
    s.app()
        .store
        .create_device_code(
            toki_sync::auth::tokens::hash(device_code),
            rec,
            &toki_sync::auth::device_flow::LIMITS,
            || unreachable!(),
        )
        .unwrap();
    let r = c.send_auth("POST", "/device/lookup", &token, Some(&json!({"user_code": "wdjb-mjht"}))).await;
    assert_eq!((r.status, r.error().as_str()), (410, "code expired"));
    let r = c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": "WDJB-MJHT"}))).await;
    assert_eq!((r.status, r.error().as_str()), (410, "code expired"));
    assert_flow_error(
        &poll(&c, "/device/token", &json!({"device_code": device_code})).await,
        400,
        "expired_token",
    );
    // Kept for a while after expiry, so a late approver is told "expired", which is no lockout
    // strike: more of them than the limit (5) leave the approver free to approve another code.
    for _ in 0..6 {
        let r =
            c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": "WDJB-MJHT"}))).await;
        assert_eq!((r.status, r.error().as_str()), (410, "code expired"), "still known after a poll");
    }
    // One expired longer ago than that is pruned by the next code request: then it is unknown.
    let old = DeviceCode {
        user_code: "WDJB-MJHX".into(),
        created_at: now - 9000,
        expires_at: now - 8100,
        ..rec_template(now)
    };
    s.app()
        .store
        .create_device_code(
            toki_sync::auth::tokens::hash("an-old-device-code-x"),
            old,
            &toki_sync::auth::device_flow::LIMITS,
            || unreachable!(),
        )
        .unwrap();
    let r = c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": "WDJB-MJHX"}))).await;
    assert_eq!(r.status, 410, "there until the next prune");
    let fresh = request_code(&c).await;
    let r = c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": "WDJB-MJHX"}))).await;
    assert_eq!((r.status, r.error().as_str()), (404, "invalid or expired code"), "pruned");
    let r =
        c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": fresh["user_code"]}))).await;
    assert_eq!(r.status, 200, "no lockout: {}", r.text());
}

fn rec_template(now: i64) -> DeviceCode {
    DeviceCode {
        user_code: String::new(),
        device_name: None,
        client_ip: ip_bytes("127.0.0.1".parse().unwrap()),
        created_at: now,
        expires_at: now + 900,
        last_poll_ms: None,
        status: CodeStatus::Pending,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_needs_a_signed_in_user_and_wrong_codes_lock_the_approver_out() {
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 3).await;
    let c = s.client();
    let code = request_code(&c).await;
    let user_code = code["user_code"].as_str().unwrap();

    let r = c.post("/device/approve", &json!({"user_code": user_code})).await;
    assert_eq!((r.status, r.error().as_str()), (401, "missing Authorization header"));
    let r = c.raw("POST", "/device/approve", &[("Authorization", "Token abc")], Some(b"{}")).await;
    assert_eq!((r.status, r.error().as_str()), (401, "expected Bearer token"));
    let r = c
        .send_auth("POST", "/auth/device/verify", "not-a-token", Some(&json!({"user_code": user_code})))
        .await;
    assert_eq!((r.status, r.error().as_str()), (401, "invalid or expired token"));
    let r = c.post("/device/lookup", &json!({"user_code": user_code})).await;
    assert_eq!(r.status, 401);

    let mallory = signed_in(&s, "mallory").await;
    let r = c.send_auth("POST", "/device/approve", &mallory, Some(&json!({}))).await;
    assert_eq!(r.status, 400, "user_code is required: {}", r.text());
    for wrong in ["AAAA-AAAA", "not a code at all", "BBBB-BBBB"] {
        let r = c.send_auth("POST", "/device/approve", &mallory, Some(&json!({"user_code": wrong}))).await;
        assert_eq!((r.status, r.error().as_str()), (404, "invalid or expired code"), "{wrong}");
    }
    let locked =
        c.send_auth("POST", "/device/approve", &mallory, Some(&json!({"user_code": user_code}))).await;
    assert_eq!(locked.status, 429, "even the right code is refused while locked");
    assert!(locked.header("retry-after").is_some());
    let locked =
        c.send_auth("POST", "/device/lookup", &mallory, Some(&json!({"user_code": user_code}))).await;
    assert_eq!(locked.status, 429, "lookups share the approver's lockout");

    // The lock is per approver: another user approves the same code.
    let trent = signed_in(&s, "trent").await;
    let r = c.send_auth("POST", "/device/approve", &trent, Some(&json!({"user_code": user_code}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = poll(&c, "/device/token", &json!({"device_code": code["device_code"]})).await;
    assert_eq!(
        c.get_auth("/me", done.json()["access_token"].as_str().unwrap()).await.json()["username"],
        "trent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn looking_up_ones_own_code_does_not_reset_the_count() {
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 5).await;
    let c = s.client();
    let mallory = signed_in(&s, "mallory").await;
    let own = request_code(&c).await;
    let lookup = |code: &str| {
        let (c, token, body) = (c, mallory.clone(), json!({"user_code": code}));
        async move { c.send_auth("POST", "/device/lookup", &token, Some(&body)).await }
    };
    for wrong in ["AAAA-AAAA", "BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD"] {
        assert_eq!(lookup(wrong).await.status, 404);
    }
    // The own code exists: answered, but the four failures stay counted (the page polls it).
    for _ in 0..3 {
        assert_eq!(lookup(own["user_code"].as_str().unwrap()).await.status, 200);
    }
    assert_eq!(lookup("EEEE-EEEE").await.status, 404, "the fifth failure is answered and locks");
    let r = lookup(own["user_code"].as_str().unwrap()).await;
    assert_eq!(r.status, 429, "locked after five failures, own-code lookups in between or not");
    let r =
        c.send_auth("POST", "/device/approve", &mallory, Some(&json!({"user_code": own["user_code"]}))).await;
    assert_eq!(r.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_wrong_codes_cannot_outrun_the_lockout() {
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 5).await;
    let token = signed_in(&s, "mallory").await;
    let requests = (0..40)
        .map(|i| {
            let path = if i % 2 == 0 { "/device/lookup" } else { "/device/approve" };
            // Well-formed codes, so each one reaches the store (the part parallel tries overlap).
            let code = format!(
                "WXYZ-AA{}{}",
                ALPHABET[i / ALPHABET.len()] as char,
                ALPHABET[i % ALPHABET.len()] as char
            );
            post_bytes(path, Some(&token), &json!({"user_code": code}))
        })
        .collect();
    let statuses: Vec<u16> = simultaneously(s.addr, requests).await.iter().map(|r| r.status).collect();
    let answered = statuses.iter().filter(|s| **s != 429).count();
    assert!(answered <= 5, "at most max_attempts wrong codes get an answer: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 404 || *s == 429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_device_comes_back_only_through_the_device_flow() {
    let s = TestServer::start().await;
    let c = s.client();
    let token = signed_in(&s, "dave").await;
    let dave = s.app().store.user_by_name("dave").unwrap().unwrap();
    let first = sync_device(s.app(), dave.id, "key-9", "box", now_secs());

    let r = c.send_auth("DELETE", &format!("/me/devices/{}", first.uuid), &token, None).await;
    assert_eq!((r.status, r.json()), (200, json!({"deleted": true})));
    assert!(matches!(
        s.app().store.auth_device(dave.id, "key-9", "box", now_secs()).unwrap(),
        AuthDevice::Removed
    ));

    let code = request_code(&c).await;
    let body = json!({"device_code": code["device_code"], "device_key": "key-9", "device_name": "box"});
    c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": code["user_code"]}))).await;
    assert_eq!(poll(&c, "/device/token", &body).await.status, 200);
    let back = sync_device(s.app(), dave.id, "key-9", "box", now_secs());
    assert_ne!(back.id, first.id, "a re-added device is a new device");
    let list = c.get_auth("/me/devices", &token).await.json();
    assert_eq!(list["devices"][0]["id"], back.uuid.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_sign_in_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let mut s = TestServer::start_in(tempfile::tempdir().unwrap(), cfg.clone()).await;
    let code = request_code(&s.client()).await;
    s.stop().await;

    let s = TestServer::start_in(tempfile::tempdir().unwrap(), cfg).await;
    let c = s.client();
    let token = c.admin_token().await;
    let r =
        c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": code["user_code"]}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = poll(
        &c,
        "/device/token",
        &json!({"device_code": code["device_code"], "device_key": "k1", "device_name": "srv"}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_and_limits() {
    let s = TestServer::start_with(|c| c.server.external_url = Some("https://toki.example.com".into())).await;
    let c = s.client();
    let code = request_code(&c).await;
    assert_eq!(code["verification_url"], "https://toki.example.com/device");
    assert_eq!(code["verification_uri"], "https://toki.example.com/device");
    assert_eq!(
        code["verification_uri_complete"],
        format!("https://toki.example.com/device?device={}", code["user_code"].as_str().unwrap())
    );

    let r = c.raw("POST", "/device/code", &[JSON], Some(b"{\"device_name\": ")).await;
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("invalid JSON body"), "{}", r.error());
    assert_eq!(c.post("/device/code", &json!({"device_name": 5})).await.status, 400);
    assert_eq!(
        c.raw("POST", "/auth/device/code", &[], Some(b"  ")).await.status,
        200,
        "a blank body is no body"
    );

    let r = c.raw("POST", "/device/token", &[], None).await;
    assert_eq!((r.status, r.error().as_str()), (400, "request body is empty; expected a JSON object"));
    assert_eq!(c.post("/device/token", &json!({"device_code": 5})).await.status, 400);
    let long_key = "k".repeat(300);
    let r =
        c.post("/device/token", &json!({"device_code": code["device_code"], "device_key": long_key})).await;
    assert_eq!((r.status, r.error().as_str()), (422, "device_key must be 1-256 bytes"));
    assert_eq!(c.get("/device/token").await.status, 405);

    // Codes in progress are bounded per client address (all of these come from 127.0.0.1).
    let mut last = 200;
    for _ in 0..25 {
        last = c.raw("POST", "/device/code", &[], None).await.status;
        if last != 200 {
            break;
        }
    }
    assert_eq!(last, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_by_a_user_deleted_since_grants_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    let token = signed_in(&s, "gone-soon").await;
    let code = request_code(&c).await;
    let r =
        c.send_auth("POST", "/device/approve", &token, Some(&json!({"user_code": code["user_code"]}))).await;
    assert_eq!(r.status, 200);
    let user = s.app().store.user_by_name("gone-soon").unwrap().unwrap();
    let admin = c.admin_token().await;
    assert_eq!(c.send_auth("DELETE", &format!("/admin/users/{}", user.uuid), &admin, None).await.status, 200);

    let body = json!({"device_code": code["device_code"], "device_key": "orphan-key", "device_name": "n"});
    assert_flow_error(&poll(&c, "/device/token", &body).await, 400, "access_denied");
    assert!(s.app().store.devices(None).unwrap().is_empty(), "no device for a user who no longer exists");
    assert_flow_error(&poll(&c, "/device/token", &body).await, 400, "expired_token");
}

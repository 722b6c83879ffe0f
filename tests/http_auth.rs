//! Public auth endpoints over real sockets: login, registration modes, refresh rotation and
//! reuse, auth discovery, brute-force lockout, persistence across restarts.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use toki_sync::store::settings::REGISTRATION_MODE;
use toki_sync::store::users::UserStatus;

#[tokio::test(flavor = "multi_thread")]
async fn health_and_auth_info() {
    let s = TestServer::start().await;
    let c = s.client();
    let r = c.get("/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok"}));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    let head = c.raw("HEAD", "/health", &[], None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    let info = c.get("/auth/info").await.json();
    assert_eq!(info["registration_mode"], "closed");
    assert_eq!(info["oidc_enabled"], false);
    assert_eq!(info["server_version"], env!("CARGO_PKG_VERSION"));

    let m = c.post("/auth-method", &json!({"username": "admin"})).await;
    assert_eq!((m.status, m.json()), (200, json!({"method": "password"})));
    let m = c.post("/auth-method", &json!({"username": "nobody-here"})).await;
    assert_eq!(m.json(), json!({"method": "password"}), "the answer must not reveal whether a user exists");
    assert_eq!(c.post("/auth-method", &json!({})).await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_success_and_failures() {
    let s = TestServer::start().await;
    let c = s.client();
    let pair = c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 3600);
    assert!(pair["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(pair["refresh_token"].as_str().unwrap().len() > 20);
    // Usernames are matched ignoring case.
    c.login("ADMIN", ADMIN_PASSWORD).await;

    let with_device = c
        .post("/login", &json!({"username": "admin", "password": ADMIN_PASSWORD, "device_id": "macbook-pro"}))
        .await;
    assert_eq!(with_device.status, 200);
    let long = "d".repeat(200);
    let r =
        c.post("/login", &json!({"username": "admin", "password": ADMIN_PASSWORD, "device_id": long})).await;
    assert_eq!(r.status, 422);

    let wrong = c.post("/login", &json!({"username": "admin", "password": "wrong-password"})).await;
    assert_eq!((wrong.status, wrong.error().as_str()), (401, "invalid credentials"));
    let unknown = c.post("/login", &json!({"username": "ghost", "password": "whatever-pass"})).await;
    assert_eq!((unknown.status, unknown.error().as_str()), (401, "invalid credentials"));

    let missing = c.post("/login", &json!({"username": "admin"})).await;
    assert_eq!(missing.status, 400);
    assert!(missing.error().contains("password"), "{}", missing.error());
    let malformed =
        c.raw("POST", "/login", &[("Content-Type", "application/json")], Some(b"{\"username\": ")).await;
    assert_eq!(malformed.status, 400);
    assert!(malformed.error().starts_with("invalid JSON body"));
    let empty = c.raw("POST", "/login", &[], None).await;
    assert_eq!(empty.status, 400);
    // A JSON body must say so: a cross-origin page can send text/plain or no type at all
    // without a preflight (tests/security.rs covers the details).
    let body = format!("{{\"username\":\"admin\",\"password\":\"{ADMIN_PASSWORD}\"}}");
    let no_ct = c.raw("POST", "/login", &[], Some(body.as_bytes())).await;
    assert_eq!(no_ct.status, 415);
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_modes() {
    let s = TestServer::start().await;
    let c = s.client();
    let closed = c.post("/register", &json!({"username": "newuser", "password": "strong-password"})).await;
    assert_eq!((closed.status, closed.error().as_str()), (403, "registration is disabled"));

    // The stored setting (admin API / CLI) wins over the configured default.
    s.app().store.set_setting(REGISTRATION_MODE, "open").unwrap();
    assert_eq!(c.get("/auth/info").await.json()["registration_mode"], "open");
    let r = c.post("/register", &json!({"username": "newuser", "password": "strong-password"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let body = r.json();
    assert_eq!(body["username"], "newuser");
    assert_eq!(body["id"].as_str().unwrap().len(), 36);
    c.login("newuser", "strong-password").await;

    let dup = c.post("/register", &json!({"username": "NewUser", "password": "strong-password"})).await;
    assert_eq!((dup.status, dup.error().as_str()), (409, "username already exists"));
    for (name, pw, msg) in [
        ("ab", "strong-password", "username must be 3-32 characters"),
        (&"x".repeat(33) as &str, "strong-password", "username must be 3-32 characters"),
        ("bad name", "strong-password", "username may only contain letters, digits, '_', '-' and '.'"),
        ("gooduser", "short", "password must be 8-128 characters"),
    ] {
        let r = c.post("/register", &json!({"username": name, "password": pw})).await;
        assert_eq!((r.status, r.error()), (422, msg.to_owned()), "{name}");
    }
    let too_long = "p".repeat(129);
    let r = c.post("/register", &json!({"username": "gooduser", "password": too_long})).await;
    assert_eq!(r.status, 429, "the fifth failure from one IP within the window locks registration");
    // On a fresh server (no earlier failures from this address) the same request gets its 422.
    let fresh =
        TestServer::start_with(|c| c.auth.registration_mode = toki_sync::config::RegistrationMode::Open)
            .await;
    let r = fresh.client().post("/register", &json!({"username": "gooduser", "password": too_long})).await;
    assert_eq!((r.status, r.error().as_str()), (422, "password must be 8-128 characters"));

    let s2 =
        TestServer::start_with(|c| c.auth.registration_mode = toki_sync::config::RegistrationMode::Approval)
            .await;
    let c2 = s2.client();
    let r = c2.post("/register", &json!({"username": "waiting", "password": "strong-password"})).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["message"], "registration pending admin approval");
    let pending = c2.post("/login", &json!({"username": "waiting", "password": "strong-password"})).await;
    assert_eq!((pending.status, pending.error().as_str()), (403, "account is pending admin approval"));
    let wrong = c2.post("/login", &json!({"username": "waiting", "password": "wrong-password"})).await;
    assert_eq!(wrong.status, 401, "a wrong password must not reveal the account state");
    let user = s2.app().store.user_by_name("waiting").unwrap().unwrap();
    s2.app().store.update_user(user.id, |u| u.status = UserStatus::Active).unwrap();
    c2.login("waiting", "strong-password").await;
    s2.app().store.update_user(user.id, |u| u.status = UserStatus::Disabled).unwrap();
    let disabled = c2.post("/login", &json!({"username": "waiting", "password": "strong-password"})).await;
    assert_eq!((disabled.status, disabled.error().as_str()), (403, "account is disabled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotation_grace_and_family_revocation() {
    let s = TestServer::start_with(|c| c.auth.refresh_reuse_grace_secs = 1).await;
    let c = s.client();
    let first = c.login("admin", ADMIN_PASSWORD).await;
    let other_family = c.login("admin", ADMIN_PASSWORD).await;
    let r0 = first["refresh_token"].as_str().unwrap().to_owned();

    let second = c.post("/token/refresh", &json!({"refresh_token": r0})).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let second = second.json();
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(second["expires_in"], 3600);
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotation issues a new refresh token");

    // Concurrent use of the same token (the daemon's two threads): same new pair.
    let again = c.post("/token/refresh", &json!({"refresh_token": r0, "device_id": "ignored"})).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), second, "a reuse inside the grace time returns the same pair");

    // Reuse after the grace time: theft. The whole family goes, the other login stays.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = c.post("/token/refresh", &json!({"refresh_token": r0})).await;
    assert_eq!((late.status, late.error().as_str()), (401, "invalid or expired refresh token"));
    let descendant = c.post("/token/refresh", &json!({"refresh_token": second["refresh_token"]})).await;
    assert_eq!(descendant.status, 401, "the family was revoked");
    let unrelated = c.post("/token/refresh", &json!({"refresh_token": other_family["refresh_token"]})).await;
    assert_eq!(unrelated.status, 200, "another login's family is unaffected");

    // Wrong kinds of token.
    let access_as_refresh = c.post("/token/refresh", &json!({"refresh_token": first["access_token"]})).await;
    assert_eq!(access_as_refresh.status, 401);
    let garbage = c.post("/token/refresh", &json!({"refresh_token": "garbage"})).await;
    assert_eq!(garbage.status, 401);
    assert_eq!(c.post("/token/refresh", &json!({})).await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_fails_after_password_change_disable_and_delete() {
    let s = TestServer::start().await;
    let c = s.client();
    let store = &s.app().store;
    store
        .create_user(toki_sync::store::users::NewUser {
            username: "carol".into(),
            role: toki_sync::store::users::Role::User,
            status: UserStatus::Active,
            password_hash: Some(toki_sync::auth::password::hash_blocking("carol-password")),
            oidc_subject: None,
        })
        .unwrap();
    let carol = store.user_by_name("carol").unwrap().unwrap();

    let p = c.login("carol", "carol-password").await;
    store.set_password(carol.id, toki_sync::auth::password::hash_blocking("carol-password-2")).unwrap();
    assert_eq!(
        c.post("/token/refresh", &json!({"refresh_token": p["refresh_token"]})).await.status,
        401,
        "password change revokes"
    );

    let p = c.login("carol", "carol-password-2").await;
    store.update_user(carol.id, |u| u.status = UserStatus::Disabled).unwrap();
    assert_eq!(
        c.post("/token/refresh", &json!({"refresh_token": p["refresh_token"]})).await.status,
        401,
        "disabled"
    );
    store.update_user(carol.id, |u| u.status = UserStatus::Active).unwrap();

    let p = c.login("carol", "carol-password-2").await;
    store
        .write(|t| toki_sync::store::users::delete_user_in(t, carol.id, toki_sync::store::now_secs()))
        .unwrap();
    assert_eq!(
        c.post("/token/refresh", &json!({"refresh_token": p["refresh_token"]})).await.status,
        401,
        "deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retired_token_inside_the_grace_time_earns_nothing_after_a_password_change() {
    let s = TestServer::start().await;
    let c = s.client();
    create_user(s.app(), "erin", "erin-password-1", toki_sync::store::users::Role::User);
    let first = c.login("erin", "erin-password-1").await;
    let rotated = c.post("/token/refresh", &json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(rotated.status, 200);
    let access = rotated.json()["access_token"].as_str().unwrap().to_owned();
    // Inside the 30 s grace time a reuse gets the cached pair...
    assert_eq!(
        c.post("/token/refresh", &json!({"refresh_token": first["refresh_token"]})).await.json(),
        rotated.json()
    );

    // ...but not once a password change has revoked every refresh token of the account.
    let body = json!({"current_password": "erin-password-1", "new_password": "erin-password-2"});
    let r = c.send_auth("PATCH", "/me/password", &access, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reuse = c.post("/token/refresh", &json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!((reuse.status, reuse.error().as_str()), (401, "invalid or expired refresh token"));
    let new = c.post("/token/refresh", &json!({"refresh_token": rotated.json()["refresh_token"]})).await;
    assert_eq!(new.status, 401, "the rotated token is revoked too");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oidc_only_account_cannot_use_a_password() {
    let s = TestServer::start().await;
    s.app()
        .store
        .create_user(toki_sync::store::users::NewUser {
            username: "sso-user".into(),
            role: toki_sync::store::users::Role::User,
            status: UserStatus::Active,
            password_hash: None,
            oidc_subject: Some("https://idp.example.com|1234".into()),
        })
        .unwrap();
    let r = s.client().post("/login", &json!({"username": "sso-user", "password": "any-password"})).await;
    assert_eq!((r.status, r.error().as_str()), (401, "this account uses OIDC login"));
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_wrong_logins_cannot_outrun_the_lockout() {
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 3).await;
    let guess = post_bytes("/login", None, &json!({"username": "admin", "password": "guess-password"}));
    let statuses: Vec<u16> = simultaneously(s.addr, vec![guess; 12]).await.iter().map(|r| r.status).collect();
    let answered = statuses.iter().filter(|s| **s != 429).count();
    assert!(answered <= 3, "at most max_attempts guesses get an answer: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn register_lockout_expires_and_a_success_clears_it() {
    let s = TestServer::start_with(|c| {
        c.auth.registration_mode = toki_sync::config::RegistrationMode::Open;
        c.auth.brute_force_max_attempts = 3;
        c.auth.brute_force_window_secs = 60;
        c.auth.brute_force_lockout_secs = 1;
    })
    .await;
    let c = s.client();
    let bad = json!({"username": "x", "password": "strong-password"});
    // Two failures, a success (clears the address), two more failures: still not locked.
    for _ in 0..2 {
        assert_eq!(c.post("/register", &bad).await.status, 422);
    }
    assert_eq!(
        c.post("/register", &json!({"username": "first", "password": "strong-password"})).await.status,
        201
    );
    for _ in 0..2 {
        assert_eq!(c.post("/register", &bad).await.status, 422);
    }
    assert_eq!(
        c.post("/register", &json!({"username": "second", "password": "strong-password"})).await.status,
        201
    );
    // Now three in a row lock the address.
    for _ in 0..3 {
        assert_eq!(c.post("/register", &bad).await.status, 422);
    }
    let locked = c.post("/register", &json!({"username": "third", "password": "strong-password"})).await;
    assert_eq!(locked.status, 429);
    assert_eq!(locked.header("retry-after"), Some("1"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        c.post("/register", &json!({"username": "third", "password": "strong-password"})).await.status,
        201,
        "the lock expired"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_lockout_expires() {
    let s = TestServer::start_with(|c| {
        c.auth.brute_force_max_attempts = 2;
        c.auth.brute_force_lockout_secs = 1;
    })
    .await;
    let c = s.client();
    let good = c.login("admin", ADMIN_PASSWORD).await;
    for _ in 0..2 {
        assert_eq!(c.post("/token/refresh", &json!({"refresh_token": "nope"})).await.status, 401);
    }
    assert_eq!(c.post("/token/refresh", &json!({"refresh_token": "nope"})).await.status, 429);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        c.post("/token/refresh", &json!({"refresh_token": "nope"})).await.status,
        401,
        "the lock expired"
    );
    assert_eq!(c.post("/token/refresh", &json!({"refresh_token": good["refresh_token"]})).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_older_than_the_window_are_forgotten() {
    let s = TestServer::start_with(|c| {
        c.auth.brute_force_max_attempts = 2;
        c.auth.brute_force_window_secs = 1;
        c.auth.brute_force_lockout_secs = 60;
    })
    .await;
    let c = s.client();
    let bad = json!({"username": "admin", "password": "wrong-password"});
    assert_eq!(c.post("/login", &bad).await.status, 401);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The first failure left the window: this one is the only one counted.
    assert_eq!(c.post("/login", &bad).await.status, 401);
    c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(c.post("/token/refresh", &json!({"refresh_token": "nope"})).await.status, 401);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.post("/token/refresh", &json!({"refresh_token": "nope"})).await.status, 401);
    assert_eq!(
        c.post("/token/refresh", &json!({"refresh_token": "nope"})).await.status,
        401,
        "two within the window lock the next"
    );
    assert_eq!(c.post("/token/refresh", &json!({"refresh_token": "nope"})).await.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_lockout_and_its_expiry() {
    let s = TestServer::start_with(|c| {
        c.auth.brute_force_max_attempts = 3;
        c.auth.brute_force_window_secs = 60;
        c.auth.brute_force_lockout_secs = 2;
    })
    .await;
    let c = s.client();
    let bad = json!({"username": "admin", "password": "wrong-password"});
    // A success clears the count: 2 failures, success, 2 failures stay below the limit.
    for _ in 0..2 {
        assert_eq!(c.post("/login", &bad).await.status, 401);
    }
    c.login("admin", ADMIN_PASSWORD).await;
    for _ in 0..2 {
        assert_eq!(c.post("/login", &bad).await.status, 401);
    }
    assert_eq!(c.post("/login", &bad).await.status, 401, "third failure locks");
    let locked = c.post("/login", &json!({"username": "admin", "password": ADMIN_PASSWORD})).await;
    assert_eq!(locked.status, 429, "even the right password is refused while locked");
    let msg = locked.error();
    assert!(msg.starts_with("too many attempts, retry after ") && msg.ends_with('s'), "{msg}");
    let secs: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
    // Other usernames from the same address are not locked.
    assert_eq!(c.post("/login", &json!({"username": "someone", "password": "x-password"})).await.status, 401);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    c.login("admin", ADMIN_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_lockout_by_address_only_for_tokens_that_do_not_parse() {
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 2).await;
    let c = s.client();
    let good = c.login("admin", ADMIN_PASSWORD).await;
    for _ in 0..2 {
        assert_eq!(c.post("/token/refresh", &json!({"refresh_token": "nope"})).await.status, 401);
    }
    let r = c.post("/token/refresh", &json!({"refresh_token": "nope"})).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    // A valid token from the same address is keyed by its own family (issue 16).
    let r = c.post("/token/refresh", &json!({"refresh_token": good["refresh_token"]})).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_is_used_only_behind_trusted_proxies() {
    // Without trusted proxies, X-Forwarded-For cannot dodge the lockout.
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 2).await;
    let c = s.client();
    let body = br#"{"username":"admin","password":"wrong-password"}"#;
    for i in 0..2 {
        let xff = format!("198.51.100.{i}");
        c.raw("POST", "/login", &[("X-Forwarded-For", &xff), JSON], Some(body)).await;
    }
    let r = c.raw("POST", "/login", &[("X-Forwarded-For", "198.51.100.77"), JSON], Some(body)).await;
    assert_eq!(r.status, 429);

    // Behind a trusted proxy, each forwarded client has its own count.
    let s = TestServer::start_with(|c| {
        c.auth.brute_force_max_attempts = 2;
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let c = s.client();
    for _ in 0..2 {
        c.raw("POST", "/login", &[("X-Forwarded-For", "198.51.100.1"), JSON], Some(body)).await;
    }
    assert_eq!(
        c.raw("POST", "/login", &[("X-Forwarded-For", "198.51.100.1"), JSON], Some(body)).await.status,
        429
    );
    assert_eq!(
        c.raw("POST", "/login", &[("X-Forwarded-For", "198.51.100.2"), JSON], Some(body)).await.status,
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn users_and_signing_secret_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let mut s = TestServer::start_in(tempfile::tempdir().unwrap(), cfg.clone()).await;
    let pair = s.client().login("admin", ADMIN_PASSWORD).await;
    s.stop().await;

    // A different TOKI_ADMIN_PASSWORD on a later start changes nothing: it is for the first start.
    let mut cfg2 = cfg.clone();
    cfg2.secrets.admin_password = Some("another-password".into());
    let s = TestServer::start_in(tempfile::tempdir().unwrap(), cfg2).await;
    let c = s.client();
    let r = c.post("/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(r.status, 200, "tokens survive a restart: the signing secret is kept in the file");
    c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        c.post("/login", &json!({"username": "admin", "password": "another-password"})).await.status,
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_jwt_secret_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.secrets.jwt_secret = Some("a-configured-secret-of-32-or-more-chars".into());
    let mut s = TestServer::start_in(tempfile::tempdir().unwrap(), cfg.clone()).await;
    let pair = s.client().login("admin", ADMIN_PASSWORD).await;
    s.stop().await;
    cfg.secrets.jwt_secret = Some("a-different-secret-of-32-or-more-chars".into());
    let s = TestServer::start_in(tempfile::tempdir().unwrap(), cfg).await;
    let r = s.client().post("/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(r.status, 401, "a token signed with the old secret is rejected");
}

//! API keys, OAuth client credentials, the scope guard and the rate limits, over real sockets:
//! keys shown once and stored hashed, typos told apart from revoked keys, revocation and expiry
//! at once, a scope matrix (each credential kind × each endpoint group), lockout of failed
//! credentials, the `X-RateLimit-*` headers and 429 with `Retry-After`.

mod common;

use common::usage::*;
use common::*;
use serde_json::{Value, json};
use toki_sync::store::users::Role;

async fn create_key(c: &Client, session: &str, scopes: &[&str]) -> Value {
    let r = c
        .send_auth("POST", "/me/api-keys", session, Some(&json!({"name": "script", "scopes": scopes})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

async fn create_client(c: &Client, session: &str, scopes: &[&str]) -> Value {
    let r = c
        .send_auth("POST", "/me/oauth-clients", session, Some(&json!({"name": "svc", "scopes": scopes})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

async fn form_post(c: &Client, body: &str, basic: Option<&str>) -> Resp {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    let auth;
    if let Some(b) = basic {
        auth = format!("Basic {b}");
        headers.push(("Authorization", &auth));
    }
    c.raw("POST", "/oauth/token", &headers, Some(body.as_bytes())).await
}

async fn client_token(c: &Client, client: &Value, scope: Option<&str>) -> String {
    let mut body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap()
    );
    if let Some(s) = scope {
        body.push_str(&format!("&scope={}", enc(s)));
    }
    let r = form_post(c, &body, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_secret_and_revoked_at_once() {
    let s = TestServer::start().await;
    let c = s.client();
    let (alice, session) = signed_in(&s, "alice", Role::User).await;
    let created = create_key(&c, &session, &["usage:read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tks_") && key.len() == 52, "{key}");
    assert_eq!(created["scopes"], json!(["usage:read"]));
    assert_eq!(created["expires_at"], Value::Null);

    // The key works as a bearer token on the usage API, the toki query endpoint and /me.
    let usage = get_ok(&c, "/api/v1/usage", &key).await;
    assert_eq!(usage["totals"]["events"], 0);
    get_ok(&c, "/api/v1/toki/query?query=usage", &key).await;
    assert_eq!(get_ok(&c, "/me", &key).await["username"], "alice");
    // PromQL: the key is accepted (then 503: no VictoriaMetrics in this test).
    assert_eq!(c.get_auth("/api/v1/query?query=up", &key).await.status, 503);

    // Listed with prefix and last use, never the secret; the file holds only its hash.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let list = get_ok(&c, "/me/api-keys", &session).await;
    let listed = &list["data"][0];
    assert_eq!(listed["prefix"].as_str().unwrap(), &key[..12]);
    assert!(listed.get("key").is_none());
    assert_eq!(listed["last_used_from"], "127.0.0.1");
    assert!(listed["last_used_at"].is_string());
    assert!(!list.to_string().contains(&key));
    let stored = s.app().store.api_keys(Some(alice.id)).unwrap();
    assert_eq!(stored.len(), 1);

    // A typo is told apart from a revoked key.
    let mut typo: Vec<char> = key.chars().collect();
    typo[20] = if typo[20] == 'x' { 'y' } else { 'x' };
    let typo: String = typo.into_iter().collect();
    let r = c.get_auth("/api/v1/usage", &typo).await;
    assert_eq!((r.status, r.error().contains("checksum")), (401, true), "{}", r.text());

    // Another user cannot see or revoke it.
    let (_bob, bob_session) = signed_in(&s, "bob", Role::User).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(get_ok(&c, "/me/api-keys", &bob_session).await["data"], json!([]));
    assert_eq!(c.send_auth("DELETE", &format!("/me/api-keys/{id}"), &bob_session, None).await.status, 404);

    // Revocation takes effect on the next request.
    let r = c.send_auth("DELETE", &format!("/me/api-keys/{id}"), &session, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.get_auth("/api/v1/usage", &key).await;
    assert_eq!((r.status, r.error()), (401, "API key revoked or unknown".to_owned()));
    assert_eq!(c.send_auth("DELETE", &format!("/me/api-keys/{id}"), &session, None).await.status, 404);
}

#[tokio::test]
async fn key_errors_expiry_admin_listing_and_user_deletion() {
    let s = TestServer::start().await;
    let c = s.client();
    let (alice, session) = signed_in(&s, "alice", Role::User).await;
    for (body, status, needle) in [
        (json!({"name": "x", "scopes": ["admin:read"]}), 422, "scopes: admin:read is only for admins"),
        (json!({"name": "x", "scopes": ["usage:write"]}), 422, "unknown scope"),
        (json!({"name": "x", "scopes": []}), 422, "at least one"),
        (json!({"name": "", "scopes": ["usage:read"]}), 422, "name must be"),
        (json!({"name": "x", "scopes": ["usage:read"], "expires_in_days": 0}), 422, "expires_in_days"),
        (json!({"name": "x"}), 400, "invalid JSON body"),
    ] {
        let r = c.send_auth("POST", "/me/api-keys", &session, Some(&body)).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.error().contains(needle), "{body}: {}", r.error());
    }
    let timed = create_key(&c, &session, &["usage:read"]).await;
    let k = c
        .send_auth(
            "POST",
            "/me/api-keys",
            &session,
            Some(&json!({"name": "t", "scopes": ["usage:read"], "expires_in_days": 30})),
        )
        .await
        .json();
    assert!(k["expires_at"].is_string());
    // Expiry takes effect at once: move the stored expiry into the past.
    let hash = toki_sync::auth::api_keys::hash(timed["key"].as_str().unwrap());
    let mut rec = s.app().store.api_key_by_hash(hash).unwrap().unwrap();
    rec.expires_at = Some(toki_sync::store::now_secs() - 1);
    s.app().store.insert_api_key(hash, &rec).unwrap();
    let r = c.get_auth("/api/v1/usage", timed["key"].as_str().unwrap()).await;
    assert_eq!((r.status, r.error()), (401, "API key expired".to_owned()));

    // Admins list everyone's keys and revoke any; users cannot.
    let admin = c.admin_token().await;
    let all = get_ok(&c, "/admin/api-keys", &admin).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    assert_eq!(all["data"][0]["username"], "alice");
    assert_eq!(c.get_auth("/admin/api-keys", &session).await.status, 403);
    let id = k["id"].as_str().unwrap();
    assert_eq!(c.send_auth("DELETE", &format!("/admin/api-keys/{id}"), &admin, None).await.status, 200);
    assert_eq!(c.get_auth("/api/v1/usage", k["key"].as_str().unwrap()).await.status, 401);

    // Deleting the user revokes their keys.
    let live = create_key(&c, &session, &["usage:read"]).await;
    let r = c.send_auth("DELETE", &format!("/admin/users/{}", alice.uuid), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.app().store.api_keys(None).unwrap().is_empty());
    assert_eq!(c.get_auth("/api/v1/usage", live["key"].as_str().unwrap()).await.status, 401);
}

/// Each credential kind × each endpoint group: allowed (anything but 401/403) or 403.
#[tokio::test]
async fn scope_matrix() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_u, user_session) = signed_in(&s, "carol", Role::User).await;
    let (_a, admin_session) = signed_in(&s, "root2", Role::Admin).await;
    let user_all = create_key(&c, &user_session, &["usage:read", "devices:read", "devices:write"]).await;
    let user_usage = create_key(&c, &user_session, &["usage:read"]).await;
    let admin_read = create_key(&c, &admin_session, &["admin:read"]).await;
    let admin_all = create_key(
        &c,
        &admin_session,
        &["usage:read", "devices:read", "devices:write", "admin:read", "admin:write"],
    )
    .await;
    let client = create_client(&c, &user_session, &["usage:read", "devices:read"]).await;
    let client_all = client_token(&c, &client, None).await;
    let client_devices = client_token(&c, &client, Some("devices:read")).await;
    let missing = "00000000-0000-0000-0000-000000000000";
    let groups: [(&str, &str, String, Option<Value>); 7] = [
        ("usage", "GET", "/api/v1/usage".into(), None),
        ("devices:read", "GET", "/me/devices".into(), None),
        ("devices:write", "PATCH", format!("/me/devices/{missing}/name"), Some(json!({"name": "n"}))),
        ("admin:read", "GET", "/admin/users".into(), None),
        ("admin:write", "POST", "/admin/teams".into(), Some(json!({"name": "matrix-team"}))),
        ("session", "GET", "/me/api-keys".into(), None),
        ("any", "GET", "/me".into(), None),
    ];
    let k = |v: &Value| v["key"].as_str().unwrap().to_owned();
    // Expected: one letter per group above: a = allowed, f = 403.
    let matrix: Vec<(&str, String, &str)> = vec![
        ("user session", user_session.clone(), "aaaffaa"),
        ("admin session", admin_session.clone(), "aaaaaaa"),
        ("user key (all user scopes)", k(&user_all), "aaafffa"),
        ("user key (usage:read)", k(&user_usage), "afffffa"),
        ("admin key (admin:read)", k(&admin_read), "fffaffa"),
        ("admin key (all)", k(&admin_all), "aaaaafa"),
        ("client token (usage, devices:read)", client_all, "aaffffa"),
        ("client token (devices:read)", client_devices, "faffffa"),
    ];
    for (who, token, expect) in &matrix {
        for ((group, method, path, body), e) in groups.iter().zip(expect.chars()) {
            let r = c.send_auth(method, path, token, body.as_ref()).await;
            if e == 'a' {
                assert!(
                    r.status != 401 && r.status != 403,
                    "{who} on {group}: expected allowed, got {} {}",
                    r.status,
                    r.text()
                );
            } else {
                assert_eq!(r.status, 403, "{who} on {group}: {}", r.text());
                let err = r.error();
                assert!(
                    err.starts_with("insufficient scope: needs ")
                        || err.contains("sign-in session")
                        || err == "admin role required",
                    "{who} on {group}: {err}"
                );
            }
        }
    }
    let r = c.get_auth("/api/v1/usage", &k(&admin_read)).await;
    assert_eq!(r.error(), "insufficient scope: needs usage:read");
}

#[tokio::test]
async fn failed_keys_and_client_secrets_are_locked_out() {
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 3).await;
    let c = s.client();
    let (_u, session) = signed_in(&s, "dave", Role::User).await;
    let good = create_key(&c, &session, &["usage:read"]).await;
    let (fake, _) = toki_sync::auth::api_keys::generate();
    for _ in 0..3 {
        assert_eq!(c.get_auth("/api/v1/usage", &fake).await.status, 401);
    }
    let r = c.get_auth("/api/v1/usage", &fake).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    // The address is locked for API credentials (a valid key too), not for sessions.
    assert_eq!(c.get_auth("/api/v1/usage", good["key"].as_str().unwrap()).await.status, 429);
    assert_eq!(c.get_auth("/api/v1/usage", &session).await.status, 200);
    // Client secrets count per address and client id.
    let client = create_client(&c, &session, &["usage:read"]).await;
    let other = create_client(&c, &session, &["usage:read"]).await;
    let wrong = format!(
        "grant_type=client_credentials&client_id={}&client_secret=wrong",
        client["client_id"].as_str().unwrap()
    );
    for _ in 0..3 {
        assert_eq!(form_post(&c, &wrong, None).await.status, 401);
    }
    let r = form_post(&c, &wrong, None).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let right = |v: &Value| {
        format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            v["client_id"].as_str().unwrap(),
            v["client_secret"].as_str().unwrap()
        )
    };
    assert_eq!(form_post(&c, &right(&client), None).await.status, 429, "locked even with the right secret");
    assert_eq!(form_post(&c, &right(&other), None).await.status, 200, "another client is not locked");
}

#[tokio::test]
async fn a_flood_of_random_credentials_does_not_grow_memory() {
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 1_000_000).await;
    let c = s.client();
    for i in 0..300 {
        let token = if i % 2 == 0 { toki_sync::auth::api_keys::generate().0 } else { format!("tkt_{i}") };
        assert_eq!(c.get_auth("/api/v1/usage", &token).await.status, 401);
    }
    // One address: one rate-limit counter and one lockout entry, however many keys were tried.
    assert!(s.app().ratelimit.tracked() <= 2, "{}", s.app().ratelimit.tracked());
    assert!(s.app().lockout.tracked() <= 1, "{}", s.app().lockout.tracked());
}

#[tokio::test]
async fn client_credentials_grant_and_its_errors() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_u, session) = signed_in(&s, "erin", Role::User).await;
    let client = create_client(&c, &session, &["usage:read"]).await;
    let id = client["client_id"].as_str().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    assert!(id.starts_with("tkc_") && secret.starts_with("tkcs_"));
    let listed = get_ok(&c, "/me/oauth-clients", &session).await;
    assert_eq!(listed["data"][0]["client_id"], id);
    assert!(!listed.to_string().contains(secret), "the secret is shown once");

    // HTTP Basic and body credentials both work.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let r = form_post(&c, "grant_type=client_credentials", Some(&basic)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["scope"], "usage:read");
    let token = client_token(&c, &client, Some("usage:read")).await;
    assert_eq!(get_ok(&c, "/api/v1/usage", &token).await["totals"]["events"], 0);

    for (body, basic, status, code) in [
        ("grant_type=password", None, 400, "unsupported_grant_type"),
        ("", None, 400, "invalid_request"),
        ("grant_type=client_credentials", None, 401, "invalid_client"),
        ("grant_type=client_credentials&grant_type=client_credentials", None, 400, "invalid_request"),
        ("grant_type=client_credentials", Some("!!!"), 401, "invalid_client"),
    ] {
        let r = form_post(&c, body, basic).await;
        assert_eq!((r.status, r.error()), (status, code.to_owned()), "{body}: {}", r.text());
        assert!(r.json()["error_description"].is_string());
    }
    let wrong = format!("grant_type=client_credentials&client_id={id}&client_secret=nope");
    let r = form_post(&c, &wrong, None).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client".to_owned()));
    assert!(r.header("www-authenticate").is_some());
    let scoped =
        format!("grant_type=client_credentials&client_id={id}&client_secret={secret}&scope=admin%3Aread");
    let r = form_post(&c, &scoped, None).await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope".to_owned()));

    // Revoking the client ends its tokens at once.
    let uuid = client["id"].as_str().unwrap();
    assert_eq!(c.send_auth("DELETE", &format!("/me/oauth-clients/{uuid}"), &session, None).await.status, 200);
    let r = c.get_auth("/api/v1/usage", &token).await;
    assert_eq!((r.status, r.error()), (401, "access token revoked or unknown".to_owned()));
    assert_eq!(form_post(&c, "grant_type=client_credentials", Some(&basic)).await.status, 401);
    // A client or key cannot create credentials.
    let key = create_key(&c, &session, &["usage:read"]).await;
    let r = c
        .send_auth(
            "POST",
            "/me/api-keys",
            key["key"].as_str().unwrap(),
            Some(&json!({"name": "x", "scopes": ["usage:read"]})),
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn rate_limit_headers_count_down_and_429_has_retry_after() {
    let s = TestServer::start_with(|c| {
        c.rate_limit.usage_per_minute = 3;
        c.rate_limit.anonymous_per_minute = 4;
    })
    .await;
    let c = s.client();
    let (_u, session) = signed_in(&s, "frank", Role::User).await;
    let key = create_key(&c, &session, &["usage:read"]).await["key"].as_str().unwrap().to_owned();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = c.get_auth("/api/v1/usage", &key).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset));
        remaining.push(r.header("x-ratelimit-remaining").unwrap().to_owned());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = c.get_auth("/api/v1/usage", &key).await;
    assert_eq!(r.status, 429);
    assert!(r.error().starts_with("rate limit exceeded, retry after "), "{}", r.error());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The session is another principal with its own counter.
    assert_eq!(c.get_auth("/api/v1/usage", &session).await.status, 200);
    // Requests without a valid credential count per address, with the same headers.
    let r = c.get_auth("/api/v1/usage", "garbage").await;
    assert_eq!((r.status, r.header("x-ratelimit-limit")), (401, Some("4")));
    // The login above was one anonymous request; two more use up the four.
    c.get_auth("/api/v1/usage", "garbage").await;
    let r = c.post("/auth-method", &json!({"username": "frank"})).await;
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"), "{}", r.text());
    let r = c.post("/login", &json!({"username": "frank", "password": "password-123"})).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    // Health and pages carry no limit.
    assert!(c.get("/health").await.header("x-ratelimit-limit").is_none());
}

//! OpenID Connect sign-in against a real provider (npm oidc-provider on loopback, started by the
//! tests from tests/oidc/provider.mjs), over HTTP: the test plays the browser or the CLI and
//! follows every redirect itself.
//!
//! Without Node or `npm ci` in tests/oidc, plain `cargo test` skips these tests; with
//! `TOKI_SYNC_FULL_TESTS=1` (tests/run.sh) they fail instead.

mod common;

use common::oidc::*;
use common::*;
use serde_json::{Value, json};
use toki_sync::store::users::{Role, UserStatus};
use tokio::task::block_in_place;

/// `GET /auth/oidc/authorize?query`: the provider URL it redirects to.
fn begin(ua: &mut UserAgent, base: &str, query: &str) -> String {
    let r = ua.get(&format!("{base}/auth/oidc/authorize{query}"));
    assert_eq!(r.status, 307, "authorize: {}", r.body);
    let location = r.location.unwrap();
    for p in ["state", "nonce", "code_challenge"] {
        assert!(query_param(&location, p).is_some_and(|v| v.len() >= 22), "{p} in {location}");
    }
    assert_eq!(query_param(&location, "code_challenge_method").as_deref(), Some("S256"));
    location
}

/// A whole sign-in as `login`; returns the server's answer to the callback.
fn sign_in(setup: &Setup, query: &str, login: &str) -> Reply {
    block_in_place(|| {
        let mut ua = UserAgent::default();
        let provider_url = begin(&mut ua, &setup.base, query);
        let callback = ua.sign_in_at_provider(&provider_url, login, &setup.base);
        ua.get(&callback)
    })
}

fn token_from(location: &str, name: &str) -> String {
    let part = location.split_once('#').map_or_else(|| location.split_once('?').unwrap().1, |(_, f)| f);
    part.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .map(toki_sync::http::request::percent_decode)
        .unwrap_or_else(|| panic!("{name} in {location}"))
}

fn assert_failure_page(r: &Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(r.location.is_none(), "no redirect");
    assert!(!r.body.contains("access_token"), "no tokens: {}", r.body);
    assert!(r.body.contains(needle), "the page says {needle:?}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_and_browser_flows_deliver_working_tokens() {
    if !provider_present() {
        return;
    }
    let setup = start(0, |_| {}).await;
    let c = setup.s.client();
    let info = c.get("/auth/info").await.json();
    assert_eq!(info["oidc_enabled"], true);
    setup.provider().account("alice-sub", "alice", &[]);

    // The CLI: a loopback redirect_uri gets the tokens in its query.
    let r = sign_in(&setup, "?redirect_uri=http%3A%2F%2F127.0.0.1%3A43123%2Fcallback", "alice-sub");
    assert_eq!(r.status, 307, "{}", r.body);
    let location = r.location.unwrap();
    assert!(location.starts_with("http://127.0.0.1:43123/callback?access_token="), "{location}");
    assert_eq!(query_param(&location, "token_type").as_deref(), Some("Bearer"));
    assert_eq!(query_param(&location, "expires_in").as_deref(), Some("3600"));
    let access = token_from(&location, "access_token");
    let me = c.get_auth("/me", &access).await.json();
    assert_eq!((me["username"].as_str(), me["auth"].as_str()), (Some("alice"), Some("oidc")));
    let refreshed =
        c.post("/token/refresh", &json!({"refresh_token": token_from(&location, "refresh_token")})).await;
    assert_eq!(refreshed.status, 200, "the refresh token works");

    // The same person again: the same account, found by (issuer, subject).
    let r = sign_in(&setup, "?redirect_uri=http://localhost:9/cb", "alice-sub");
    let again = c.get_auth("/me", &token_from(&r.location.unwrap(), "access_token")).await.json();
    assert_eq!(again["id"], me["id"]);
    // Another subject with the same preferred_username gets its own, unique name.
    setup.provider().account("alice-2", "alice", &[]);
    let r = sign_in(&setup, "?redirect_uri=http://[::1]:9/cb", "alice-2");
    let other = c.get_auth("/me", &token_from(&r.location.unwrap(), "access_token")).await.json();
    assert_eq!(other["username"], "alice2");

    // The browser: tokens in the fragment of the dashboard (or the device page), with the
    // page's client_state.
    let state = "AbCdEfGhIjKlMnOpQrStUv";
    let r = sign_in(&setup, &format!("?client_state={state}"), "alice-sub");
    let location = r.location.unwrap();
    assert!(location.starts_with("/dashboard#access_token="), "{location}");
    assert_eq!(token_from(&location, "client_state"), state);
    assert_eq!(c.get_auth("/me", &token_from(&location, "access_token")).await.status, 200);
    let r = sign_in(&setup, &format!("?return_to=/device&client_state={state}"), "alice-sub");
    assert!(r.location.unwrap().starts_with("/device#access_token="));

    // OIDC accounts: no password login, /auth-method says oidc.
    let login = c.post("/login", &json!({"username": "alice", "password": "whatever-password"})).await;
    assert_eq!((login.status, login.error().as_str()), (401, "this account uses OIDC login"));
    let method = c.post("/auth-method", &json!({"username": "alice"})).await.json();
    assert_eq!(method, json!({"method": "oidc", "auth_url": "/auth/oidc/authorize"}));
    let method = c.post("/auth-method", &json!({"username": "admin"})).await.json();
    assert_eq!(method["method"], "password");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_redirects_states_codes_tokens_and_provider_errors_fail_cleanly() {
    if !provider_present() {
        return;
    }
    let setup = start(0, |_| {}).await;
    let base = setup.base.clone();
    let c = setup.s.client();
    for bad in [
        "https://evil.example/cb",
        "http://evil.example:80/",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:80@evil.example/",
    ] {
        let r = c.get(&format!("/auth/oidc/authorize?redirect_uri={}", bad)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.error().contains("loopback"), "{}", r.error());
    }
    assert_eq!(c.get("/auth/oidc/authorize?client_state=short").await.status, 400);

    // A forged state, and none at all.
    let forged = c.get("/auth/callback?code=abc&state=forged-state-value").await;
    assert_eq!(forged.status, 400);
    assert!(forged.text().contains("unknown or was already used"));
    assert_eq!(c.get("/auth/oidc/callback?code=abc").await.status, 400);

    block_in_place(|| {
        // A replayed callback (same state): refused the second time.
        let mut ua = UserAgent::default();
        let provider_url = begin(&mut ua, &base, "");
        let callback = ua.sign_in_at_provider(&provider_url, "replayer", &base);
        let first = ua.get(&callback);
        assert_eq!(first.status, 307);
        assert_failure_page(&ua.get(&callback), 400, "already used");

        // A replayed code under a fresh state: the provider refuses it.
        let code = query_param(&callback, "code").unwrap();
        let fresh = begin(&mut ua, &base, "");
        let state = query_param(&fresh, "state").unwrap();
        let r = ua.get(&format!("{base}/auth/callback?code={code}&state={state}"));
        assert_failure_page(&r, 502, "could not be completed");

        // The provider's own error (the user cancels there).
        let mut ua = UserAgent::default();
        let provider_url = begin(&mut ua, &base, "");
        let callback = ua.cancel_at_provider(&provider_url, &base);
        assert!(callback.contains("error=access_denied"), "{callback}");
        assert_failure_page(&ua.get(&callback), 400, "access_denied");
    });

    // ID tokens signed by the provider's key, but for another audience or with another nonce.
    setup.provider().mode("wrong-aud");
    assert_failure_page(&sign_in(&setup, "", "mallory"), 400, "failed verification");
    setup.provider().mode("wrong-nonce");
    assert_failure_page(&sign_in(&setup, "", "mallory"), 400, "failed verification");
    setup.provider().mode("");
    assert_eq!(sign_in(&setup, "", "mallory").status, 307, "and a correct token works");
    assert!(setup.s.app().oidc.as_ref().unwrap().pending.is_empty(), "no state left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_grant_and_revoke_admin_and_limit_access() {
    if !provider_present() {
        return;
    }
    let setup = start(0, |c| {
        c.oidc.scopes.push("groups".into());
        c.oidc.groups_claim = Some("groups".into());
        c.oidc.admin_groups = vec!["toki-admins".into()];
        c.oidc.allowed_groups = vec!["toki-users".into(), "toki-admins".into()];
    })
    .await;
    let c = setup.s.client();
    let p = setup.provider();
    let role_after_sign_in = |groups: &'static [&'static str]| {
        p.account("carol-sub", "carol", groups);
        let r = sign_in(&setup, "", "carol-sub");
        assert_eq!(r.status, 307, "{}", r.body);
        token_from(&r.location.unwrap(), "access_token")
    };
    let token = role_after_sign_in(&["toki-users", "toki-admins"]);
    assert_eq!(c.get_auth("/me", &token).await.json()["role"], "admin");
    assert_eq!(c.get_auth("/admin/users", &token).await.status, 200);
    let token = role_after_sign_in(&["toki-users"]);
    assert_eq!(c.get_auth("/me", &token).await.json()["role"], "user", "left the admin group");
    assert_eq!(c.get_auth("/admin/users", &token).await.status, 403);

    p.account("dave-sub", "dave", &["other-group"]);
    assert_failure_page(&sign_in(&setup, "", "dave-sub"), 403, "not in a group allowed");
    assert!(setup.s.app().store.user_by_name("dave").unwrap().is_none(), "no account for a refused person");
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_mode_links_disabled_and_deleted_accounts() {
    if !provider_present() {
        return;
    }
    let setup = start(0, |c| c.auth.registration_mode = toki_sync::config::RegistrationMode::Closed).await;
    let c = setup.s.client();
    let app = setup.s.app();
    let admin = c.admin_token().await;

    // Closed: a new identity is refused, until an admin links an account to it.
    assert_failure_page(&sign_in(&setup, "", "erin-sub"), 403, "registration is closed");
    let erin = create_user(app, "erin", "erin-password-1", Role::User);
    let link = c
        .send_auth(
            "POST",
            &format!("/admin/users/{}/oidc", erin.uuid),
            &admin,
            Some(&json!({"subject": "erin-sub"})),
        )
        .await;
    assert_eq!(link.status, 200, "{}", link.text());
    assert_eq!(link.json()["auth"], "oidc");
    let r = sign_in(&setup, "", "erin-sub");
    let me = c.get_auth("/me", &token_from(&r.location.unwrap(), "access_token")).await.json();
    assert_eq!(me["username"], "erin");
    // A linked password account keeps its password while password login is on.
    c.login("erin", "erin-password-1").await;
    let taken = c
        .send_auth(
            "POST",
            "/admin/users/00000000-0000-0000-0000-000000000000/oidc",
            &admin,
            Some(&json!({"subject": "x"})),
        )
        .await;
    assert_eq!(taken.status, 404);

    // Disabled: refused. Deleted: back only through registration (closed: refused).
    app.store.update_user(erin.id, |u| u.status = UserStatus::Disabled).unwrap();
    assert_failure_page(&sign_in(&setup, "", "erin-sub"), 403, "disabled");
    assert_eq!(c.send_auth("DELETE", &format!("/admin/users/{}", erin.uuid), &admin, None).await.status, 200);
    assert_failure_page(&sign_in(&setup, "", "erin-sub"), 403, "registration is closed");

    // Approval: the first sign-in creates a pending account, shown to admins; approved, it works.
    c.send_auth("PATCH", "/admin/settings", &admin, Some(&json!({"registration_mode": "approval"}))).await;
    setup.provider().account("frank-sub", "frank", &[]);
    assert_failure_page(&sign_in(&setup, "", "frank-sub"), 403, "waiting for an administrator");
    let pending = c.get_auth("/admin/pending", &admin).await.json();
    let frank = pending["pending"].as_array().unwrap().iter().find(|u| u["username"] == "frank").cloned();
    let frank: Value = frank.expect("frank waits for approval");
    assert_eq!(frank["auth"], "oidc");
    let approved = c
        .send_auth("POST", &format!("/admin/pending/{}/approve", frank["id"].as_str().unwrap()), &admin, None)
        .await;
    assert_eq!(approved.status, 200);
    assert_eq!(sign_in(&setup, "", "frank-sub").status, 307);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_login_off_leaves_only_the_break_glass_admin() {
    if !provider_present() {
        return;
    }
    let setup = start(0, |c| {
        c.oidc.password_login = false;
        c.oidc.break_glass_admin = Some("admin".into());
    })
    .await;
    let c = setup.s.client();
    create_user(setup.s.app(), "gina", "gina-password-1", Role::User);
    let r = c.post("/login", &json!({"username": "gina", "password": "gina-password-1"})).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("password login is disabled"), "{}", r.error());
    assert_eq!(c.post("/auth-method", &json!({"username": "gina"})).await.json()["method"], "oidc");
    c.admin_token().await;
    assert_eq!(c.get("/auth/info").await.json()["password_login"], false);
    let r = c.post("/register", &json!({"username": "newbie", "password": "newbie-password-1"})).await;
    assert_eq!(r.status, 403, "no password accounts by registration: {}", r.text());
    assert_eq!(sign_in(&setup, "", "newbie-sub").status, 307, "SSO registration still works");
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_down_at_start_then_back_and_rotating_its_keys() {
    if !provider_present() {
        return;
    }
    let port = free_port();
    let mut setup = start(port, |_| {}).await;
    let c = setup.s.client();
    assert_eq!(c.get("/health").await.status, 200, "the server runs without its provider");
    let r = c.get("/auth/oidc/authorize").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.error().contains("not available yet"), "{}", r.error());
    assert_eq!(c.get("/auth/info").await.json()["oidc_ready"], false);

    let redirect = format!("{}/auth/callback", setup.base);
    setup.provider = Some(Provider::start(port, &redirect));
    wait_ready(&setup).await;
    assert_eq!(sign_in(&setup, "", "henry-sub").status, 307, "sign-in works once the provider is up");

    // A restarted provider signs with a new key: the server fetches the key set again.
    setup.provider.take().unwrap().stop();
    setup.provider = Some(Provider::start(port, &redirect));
    let r = sign_in(&setup, "", "henry-sub");
    assert_eq!(r.status, 307, "{}", r.body);
    setup.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn es256_signed_id_tokens_are_verified() {
    if !provider_present() {
        return;
    }
    let setup = start_with(0, &[("SIGNING_ALG", "ES256")], |_| {}).await;
    assert_eq!(
        sign_in(&setup, "", "kim-sub").status,
        307,
        "an ES256 ID token (Kanidm, Pocket ID) is accepted"
    );
    setup.provider().mode("wrong-aud");
    assert_failure_page(&sign_in(&setup, "", "kim-sub"), 400, "failed verification");
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_only_in_userinfo_are_read_from_there() {
    if !provider_present() {
        return;
    }
    let setup = start_with(0, &[("CLAIMS_IN_USERINFO", "1")], |c| {
        c.oidc.scopes.push("groups".into());
        c.oidc.groups_claim = Some("groups".into());
        c.oidc.admin_groups = vec!["toki-admins".into()];
    })
    .await;
    setup.provider().account("jane-sub", "jane", &["toki-admins"]);
    let r = sign_in(&setup, "", "jane-sub");
    assert_eq!(r.status, 307, "{}", r.body);
    let me = setup.s.client().get_auth("/me", &token_from(&r.location.unwrap(), "access_token")).await.json();
    assert_eq!((me["username"].as_str(), me["role"].as_str()), (Some("jane"), Some("admin")));
}

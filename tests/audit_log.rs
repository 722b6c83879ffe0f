//! The audit log over real sockets (`GET /admin/audit`) and the offline commands of the public
//! API (`toki-sync admin api-key`, `admin export`, `admin audit`) on the same data file.

mod common;

use common::usage::*;
use common::*;
use serde_json::{Value, json};
use toki_sync::store::users::Role;

async fn audit(c: &Client, token: &str, query: &str) -> Vec<Value> {
    get_ok(c, &format!("/admin/audit?limit=100{query}"), token).await["data"].as_array().unwrap().clone()
}

fn has(entries: &[Value], action: &str, actor: &str, target: &str) -> bool {
    entries
        .iter()
        .any(|e| e["action"] == action && e["actor"] == actor && (target.is_empty() || e["target"] == target))
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_appear_for_each_action_and_page_with_a_cursor() {
    let mut s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 2).await;
    let c = s.client();
    let root = c.admin_token().await;
    // Sign-ins: a failure, a lockout, a success.
    let wrong = json!({"username": "ghost", "password": "wrong-password"});
    for _ in 0..3 {
        c.post("/login", &wrong).await;
    }
    let (alice, token) = signed_in(&s, "alice", Role::User).await;
    let key = c
        .send_auth("POST", "/me/api-keys", &token, Some(&json!({"name": "k", "scopes": ["usage:read"]})))
        .await
        .json();
    let key_id = key["id"].as_str().unwrap().to_owned();
    c.send_auth("DELETE", &format!("/me/api-keys/{key_id}"), &token, None).await;
    let client = c
        .send_auth(
            "POST",
            "/me/oauth-clients",
            &token,
            Some(&json!({"name": "svc", "scopes": ["usage:read"]})),
        )
        .await
        .json();
    let r = c
        .send_auth(
            "PATCH",
            "/me/password",
            &token,
            Some(&json!({"current_password": "password-123", "new_password": "password-456"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let team = c.send_auth("POST", "/admin/teams", &root, Some(&json!({"name": "core"}))).await.json();
    c.send_auth(
        "POST",
        &format!("/admin/teams/{}/members", team["id"].as_str().unwrap_or_default()),
        &root,
        Some(&json!({"user_id": alice.uuid.to_string()})),
    )
    .await;
    c.send_auth("PUT", "/admin/settings/registration_mode", &root, Some(&json!({"value": "closed"}))).await;
    c.send_auth(
        "PATCH",
        &format!("/admin/users/{}/role", alice.uuid),
        &root,
        Some(&json!({"role": "admin"})),
    )
    .await;
    let device = sync(&s, &root, "box", "box", "claude_code", &[]).await;
    c.send_auth("DELETE", &format!("/admin/devices/{device}"), &root, None).await;
    let created = c
        .send_auth(
            "POST",
            "/admin/users",
            &root,
            Some(&json!({"username": "temp", "password": "password-789"})),
        )
        .await
        .json();
    c.send_auth("DELETE", &format!("/admin/users/{}", created["id"].as_str().unwrap()), &root, None).await;

    let all = audit(&c, &root, "").await;
    assert!(has(&all, "login.failure", "ghost", "ghost"), "{all:#?}");
    assert!(has(&all, "login.locked", "ghost", "ghost"));
    assert!(has(&all, "login.success", "alice", "alice"));
    assert!(has(&all, "api_key.create", "alice", &key_id));
    assert!(has(&all, "api_key.revoke", "alice", &key_id));
    assert!(has(&all, "oauth_client.create", "alice", client["client_id"].as_str().unwrap()));
    assert!(has(&all, "password.change", "alice", "alice"));
    assert!(has(&all, "team.create", "admin", "core"));
    assert!(has(&all, "team.member_add", "admin", "core alice"));
    assert!(has(&all, "setting.change", "admin", "registration_mode=\"closed\""));
    assert!(has(&all, "user.role", "admin", "alice admin"));
    assert!(has(&all, "device.delete", "admin", &device));
    assert!(has(&all, "user.create", "admin", "temp"));
    assert!(has(&all, "user.delete", "admin", "temp"));
    let e = all.iter().find(|e| e["action"] == "api_key.create").unwrap();
    assert_eq!((e["actor_kind"].as_str(), e["address"].as_str()), (Some("session"), Some("127.0.0.1")));
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    let times: Vec<i64> = all.iter().map(|e| e["ts_ms"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // No secret ever reaches the log.
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains(key["key"].as_str().unwrap())
            && !text.contains(client["client_secret"].as_str().unwrap())
    );

    // Filters and paging.
    let keys = audit(&c, &root, "&action=api_key.").await;
    assert_eq!(keys.len(), 2);
    assert!(audit(&c, &root, "&actor=ghost").await.iter().all(|e| e["actor"] == "ghost"));
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let page = get_ok(&c, &format!("/admin/audit?limit=3{cursor}"), &root).await;
        seen += page["data"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(seen, all.len());
    assert_eq!(c.get_auth("/admin/audit?cursor=zzz", &root).await.status, 400);
    assert_eq!(c.get_auth("/admin/audit?limit=0", &root).await.status, 400);
    let user_token = c.login("alice", "password-456").await["access_token"].as_str().unwrap().to_owned();
    // alice is an admin now; a non-admin is refused.
    assert_eq!(c.get_auth("/admin/audit", &user_token).await.status, 200);
    let (_b, bob) = signed_in(&s, "bob", Role::User).await;
    assert_eq!(c.get_auth("/admin/audit", &bob).await.status, 403);

    // Offline: the commands on the same file once the server stopped.
    let bob_key = c
        .send_auth("POST", "/me/api-keys", &bob, Some(&json!({"name": "cli", "scopes": ["usage:read"]})))
        .await
        .json();
    sync(
        &s,
        &bob,
        "laptop",
        "laptop",
        "claude_code",
        &[Ev {
            ts: midnight_days_ago(1),
            id: "m1",
            model: "claude-sonnet-4-5-20250929",
            session: "s",
            project: "p",
            tokens: [1, 2, 3, 4],
        }],
    )
    .await;
    s.stop().await;
    let dir = s.dir.path();
    let (code, out, err) = admin(dir, &["api-key", "list", "--json"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(bob_key["id"].as_str().unwrap()) && !out.contains(bob_key["key"].as_str().unwrap()));
    let (code, out, err) = admin(dir, &["api-key", "revoke", bob_key["id"].as_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked"));
    let (code, _, err) = admin(dir, &["api-key", "revoke", bob_key["id"].as_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("no API key"), "{err}");
    let (code, out, err) = admin(dir, &["audit", "--json", "--action", "api_key.revoke"], None);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["audit"][0]["actor_kind"], "cli");
    // Offline changes are audited too.
    let (code, _, err) = admin(dir, &["team", "add", "ops"], None);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = admin(dir, &["audit", "--json", "--action", "team."], None);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["audit"][0]["action"].as_str(), v["audit"][0]["target"].as_str()),
        (Some("team.create"), Some("ops"))
    );
    assert_eq!(v["audit"][0]["actor_kind"], "cli");
    let (code, out, err) = admin(dir, &["export", "--user", "bob", "--format", "ndjson"], None);
    assert_eq!(code, 0, "{err}");
    let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!((line["total"].as_u64(), line["project"].as_str()), (Some(10), Some("p")));
    assert!(err.contains("exported 1 records"));
    let (code, out, _) = admin(dir, &["export", "--user", "bob"], None);
    assert_eq!((code, out.lines().count()), (0, 2), "csv header and one row");
    let (code, _, err) = admin(dir, &["export", "--user", "nobody"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no user named"), "{err}");
}

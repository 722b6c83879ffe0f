//! Self-service endpoints over real sockets: the devices list in both shapes, rename, delete
//! (with usage data, tombstone and live connections), password change, teams; and that no user
//! can see or touch another user's devices.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use toki_sync::store::devices::AuthDevice;
use toki_sync::store::now_secs;
use toki_sync::store::teams::TeamRole;
use toki_sync::store::users::{NewUser, Role, UserStatus};
use toki_sync::sync::registry::SessionInfo;

const PW: &str = "user-password-1";

/// Two users with a token each.
async fn two_users(
    s: &TestServer,
) -> (toki_sync::store::users::User, String, toki_sync::store::users::User, String) {
    let alice = create_user(s.app(), "alice", PW, Role::User);
    let bob = create_user(s.app(), "bob", PW, Role::User);
    let c = s.client();
    let ta = c.login("alice", PW).await["access_token"].as_str().unwrap().to_owned();
    let tb = c.login("bob", PW).await["access_token"].as_str().unwrap().to_owned();
    (alice, ta, bob, tb)
}

fn session(user: &toki_sync::store::users::User, device: &toki_sync::store::devices::Device) -> SessionInfo {
    SessionInfo {
        user_id: user.id,
        user_uuid: user.uuid,
        username: user.username.clone(),
        device_id: device.id,
        device_uuid: device.uuid,
        device_name: device.name.clone(),
        provider: "claude_code".into(),
        peer: "127.0.0.1:50000".parse().unwrap(),
        tls: false,
        connected_at: now_secs(),
        last_activity_at: now_secs(),
        last_batch_at: None,
        last_ts_ms: 0,
        events_accepted: 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_self_service_endpoint_needs_a_token() {
    let s = TestServer::start().await;
    let c = s.client();
    for (method, path) in [
        ("GET", "/me"),
        ("GET", "/me/devices"),
        ("DELETE", "/me/devices/0d7f1b52-54c4-4c2f-9a55-1b0f8a3f6a11"),
        ("PATCH", "/me/devices/0d7f1b52-54c4-4c2f-9a55-1b0f8a3f6a11/name"),
        ("PATCH", "/me/password"),
        ("GET", "/me/teams"),
    ] {
        let r = c.raw(method, path, &[], None).await;
        assert_eq!((r.status, r.error().as_str()), (401, "missing Authorization header"), "{method} {path}");
        let r = c.send_auth(method, path, "forged.token.value", None).await;
        assert_eq!((r.status, r.error().as_str()), (401, "invalid or expired token"), "{method} {path}");
    }
    // A refresh token is not an access token.
    let pair = c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(c.get_auth("/me", pair["refresh_token"].as_str().unwrap()).await.status, 401);
    let me = c.get_auth("/me", pair["access_token"].as_str().unwrap()).await.json();
    assert_eq!((me["username"].as_str(), me["role"].as_str()), (Some("admin"), Some("admin")));
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_list_has_both_key_sets_and_only_the_callers_devices() {
    let s = TestServer::start().await;
    let c = s.client();
    let (alice, ta, bob, tb) = two_users(&s).await;
    let seen_at = 1_774_693_800; // 2026-03-28T10:30:00Z
    let a1 = sync_device(s.app(), alice.id, "key-a1", "macbook-pro", seen_at);
    let a2 = s
        .app()
        .store
        .write(|t| toki_sync::store::devices::register_in(t, alice.id, "key-a2", "", 5))
        .unwrap();
    sync_device(s.app(), bob.id, "key-b1", "bobs-box", seen_at);

    let r = c.get_auth("/me/devices", &ta).await;
    assert_eq!(r.status, 200);
    let list = r.json()["devices"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "bob's device is not listed: {list:?}");
    let first = list.iter().find(|d| d["device_key"] == "key-a1").unwrap();
    assert_eq!(first["id"], a1.uuid.to_string());
    assert_eq!(first["device_id"], first["id"]);
    assert_eq!(first["name"], "macbook-pro");
    assert_eq!(first["device_name"], "macbook-pro");
    assert_eq!(first["last_seen_at"], seen_at);
    assert_eq!(first["last_seen"], "2026-03-28T10:30:00Z");
    let never = list.iter().find(|d| d["id"] == a2.uuid.to_string()).unwrap();
    assert!(never["last_seen_at"].is_null() && never["last_seen"].is_null(), "never seen: null for both");

    let bobs = c.get_auth("/me/devices", &tb).await.json();
    assert_eq!(bobs["devices"].as_array().unwrap().len(), 1);
    assert_eq!(bobs["devices"][0]["device_key"], "key-b1");
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_checks_the_name_and_the_owner() {
    let s = TestServer::start().await;
    let c = s.client();
    let (alice, ta, bob, tb) = two_users(&s).await;
    let a1 = sync_device(s.app(), alice.id, "key-a1", "laptop", 1);
    let b1 = sync_device(s.app(), bob.id, "key-b1", "bobs-box", 1);
    let path = format!("/me/devices/{}/name", a1.uuid);

    let r = c.send_auth("PATCH", &path, &ta, Some(&json!({"name": "  work laptop  "}))).await;
    assert_eq!((r.status, r.json()), (200, json!({"updated": true})));
    assert_eq!(s.app().store.device(a1.id).unwrap().unwrap().name, "work laptop");
    for bad in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "a\nb"}),
    ] {
        let r = c.send_auth("PATCH", &path, &ta, Some(&bad)).await;
        assert_eq!(r.status, 422, "{bad}");
        assert!(r.error().starts_with("name must be 1-64 characters"), "{}", r.error());
    }
    let r = c.send_auth("PATCH", &path, &ta, Some(&json!({"name": "ü".repeat(64)}))).await;
    assert_eq!(r.status, 200, "64 characters are fine even as 128 bytes");
    assert_eq!(c.send_auth("PATCH", &path, &ta, Some(&json!({"title": "x"}))).await.status, 400);

    // Bob's device, a made-up id and garbage all look the same to alice.
    for id in [b1.uuid.to_string(), "0d7f1b52-54c4-4c2f-9a55-1b0f8a3f6a11".into(), "not-a-uuid".into()] {
        let r = c
            .send_auth("PATCH", &format!("/me/devices/{id}/name"), &ta, Some(&json!({"name": "mine now"})))
            .await;
        assert_eq!((r.status, r.error().as_str()), (404, "device not found"), "{id}");
    }
    assert_eq!(s.app().store.device(b1.id).unwrap().unwrap().name, "bobs-box");
    let r = c
        .send_auth("PATCH", &format!("/me/devices/{}/name", b1.uuid), &tb, Some(&json!({"name": "renamed"})))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_usage_tombstones_and_closes_connections() {
    let s = TestServer::start().await;
    let c = s.client();
    let (alice, ta, bob, _tb) = two_users(&s).await;
    let a1 = sync_device(s.app(), alice.id, "key-a1", "laptop", 1);
    let a2 = sync_device(s.app(), alice.id, "key-a2", "desktop", 1);
    let b1 = sync_device(s.app(), bob.id, "key-b1", "bobs-box", 1);
    ingest_events(&s, alice.id, a1.id, 30).await;
    ingest_events(&s, alice.id, a2.id, 20).await;
    ingest_events(&s, bob.id, b1.id, 10).await;
    assert_eq!(s.app().store.stats().unwrap().events, 60);
    assert_eq!(usage_totals(&s.app().store, alice.id).0, 50, "alice's rollups count both devices");

    // Another user's device: 404, nothing deleted.
    let r = c.send_auth("DELETE", &format!("/me/devices/{}", b1.uuid), &ta, None).await;
    assert_eq!((r.status, r.error().as_str()), (404, "device not found"));
    assert_eq!(c.send_auth("DELETE", "/me/devices/garbage", &ta, None).await.status, 404);
    assert_eq!(s.app().store.stats().unwrap().events, 60);

    let live = s.app().sessions.register(session(&alice, &a1));
    let other = s.app().sessions.register(session(&alice, &a2));
    let r = c.send_auth("DELETE", &format!("/me/devices/{}", a1.uuid), &ta, None).await;
    assert_eq!((r.status, r.json()), (200, json!({"deleted": true})));
    tokio::time::timeout(Duration::from_secs(10), live.killed())
        .await
        .expect("the deleted device's connection is closed");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), other.killed()).await.is_err(),
        "other devices stay connected"
    );

    assert_eq!(s.app().store.stats().unwrap().events, 30, "a1's 30 events are gone, the rest stay");
    assert_eq!(event_count(&s.app().store), 30);
    // The rollups (what the usage API and dashboard read) lose a1's share too.
    let (events, total, _) = usage_totals(&s.app().store, alice.id);
    assert_eq!((events, total), (20, 20 * 15), "only a2's usage is left in alice's rollups");
    assert_eq!(usage_totals(&s.app().store, bob.id).0, 10, "bob's rollups are untouched");
    assert!(s.app().store.device(a1.id).unwrap().is_none());
    assert!(matches!(
        s.app().store.auth_device(alice.id, "key-a1", "laptop", 2).unwrap(),
        AuthDevice::Removed
    ));
    assert!(matches!(
        s.app().store.auth_device(bob.id, "key-b1", "bobs-box", 2).unwrap(),
        AuthDevice::Ready(_)
    ));
    let again = c.send_auth("DELETE", &format!("/me/devices/{}", a1.uuid), &ta, None).await;
    assert_eq!(again.status, 404);
    let list = c.get_auth("/me/devices", &ta).await.json();
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_checks_the_current_one_and_revokes_refresh_tokens() {
    let s = TestServer::start_with(|c| c.auth.brute_force_max_attempts = 3).await;
    let c = s.client();
    create_user(s.app(), "erin", PW, Role::User);
    let pair = c.login("erin", PW).await;
    let token = pair["access_token"].as_str().unwrap();

    let r = c
        .send_auth(
            "PATCH",
            "/me/password",
            token,
            Some(&json!({"current_password": PW, "new_password": "short"})),
        )
        .await;
    assert_eq!((r.status, r.error().as_str()), (422, "password must be 8-128 characters"));
    let r = c
        .send_auth(
            "PATCH",
            "/me/password",
            token,
            Some(&json!({"current_password": "wrong-password", "new_password": "new-password-1"})),
        )
        .await;
    assert_eq!((r.status, r.error().as_str()), (403, "current password is incorrect"));
    assert_eq!(
        c.send_auth("PATCH", "/me/password", token, Some(&json!({"new_password": "x"}))).await.status,
        400
    );

    let r = c
        .send_auth(
            "PATCH",
            "/me/password",
            token,
            Some(&json!({"current_password": PW, "new_password": "new-password-1"})),
        )
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"updated": true})));
    let refresh = c.post("/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(refresh.status, 401, "every refresh token of the user is revoked");
    assert_eq!(c.post("/login", &json!({"username": "erin", "password": PW})).await.status, 401);
    c.login("erin", "new-password-1").await;

    // Wrong current passwords count like failed logins.
    for _ in 0..3 {
        c.send_auth(
            "PATCH",
            "/me/password",
            token,
            Some(&json!({"current_password": "guess-guess", "new_password": "new-password-2"})),
        )
        .await;
    }
    let r = c
        .send_auth(
            "PATCH",
            "/me/password",
            token,
            Some(&json!({"current_password": "new-password-1", "new_password": "new-password-2"})),
        )
        .await;
    assert_eq!(r.status, 429);

    // An account that signs in only through OIDC has no password to change.
    let oidc = s
        .app()
        .store
        .create_user(NewUser {
            username: "sso-user".into(),
            role: Role::User,
            status: UserStatus::Active,
            password_hash: None,
            oidc_subject: Some("https://idp|42".into()),
        })
        .unwrap();
    let pair = s.app().tokens.issue(&s.app().store, &oidc, None).unwrap();
    let r = c
        .send_auth(
            "PATCH",
            "/me/password",
            &pair.access_token,
            Some(&json!({"current_password": "x", "new_password": "new-password-1"})),
        )
        .await;
    assert_eq!((r.status, r.error().as_str()), (400, "this account uses OIDC login"));
}

#[tokio::test(flavor = "multi_thread")]
async fn teams_of_the_caller() {
    let s = TestServer::start().await;
    let c = s.client();
    let (alice, ta, _bob, tb) = two_users(&s).await;
    let store = &s.app().store;
    let eng = store.create_team("engineering", 1).unwrap();
    let ops = store.create_team("ops", 1).unwrap();
    store.add_team_member(eng.id, alice.id, TeamRole::Admin, 1).unwrap();
    store.add_team_member(ops.id, alice.id, TeamRole::Member, 1).unwrap();
    let r = c.get_auth("/me/teams", &ta).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([
            {"team_id": eng.uuid.to_string(), "team_name": "engineering", "role": "admin"},
            {"team_id": ops.uuid.to_string(), "team_name": "ops", "role": "member"},
        ])
    );
    assert_eq!(c.get_auth("/me/teams", &tb).await.json(), json!([]));
}

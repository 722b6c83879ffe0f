//! Issue 16, item 1: deleting a device (by its user, an admin or the admin CLI) revokes the tokens
//! the device flow issued for it and closes its sync sessions; its own key keeps getting
//! `device_removed`, and its tokens cannot register another key. Deleting a user and changing or
//! resetting a password close the user's live sync connections.

mod common;

use common::sync_client::{AuthReply, SyncClient, auth_payload};
use common::*;
use serde_json::{Value, json};
use toki_sync::store::users::Role;

/// The toki CLI's device login for `user` (signed in as `token` in the browser) with `key`;
/// returns the token pair the CLI gets and the device id.
async fn device_login(c: &Client, token: &str, key: &str) -> (Value, String) {
    let code = c.raw("POST", "/device/code", &[], None).await.json();
    let r =
        c.send_auth("POST", "/device/approve", token, Some(&json!({"user_code": code["user_code"]}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = json!({"device_code": code["device_code"], "device_key": key, "device_name": "laptop"});
    let r = c.post("/device/token", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pair = r.json();
    let devices = c.get_auth("/me/devices", token).await.json();
    let id = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_key"] == key)
        .expect("registered")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (pair, id)
}

fn access(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

/// A live, authenticated sync session.
async fn session(s: &TestServer, token: &str, key: &str) -> SyncClient {
    let mut c = SyncClient::plain(s.sync).await;
    c.auth(&auth_payload(token, key, "claude_code")).await.device_id();
    c
}

/// The server closes the connection soon (a deletion or password change told it to).
async fn assert_closed(c: &mut SyncClient, what: &str) {
    assert!(c.closed_by_server().await, "{what}: the sync connection stays open");
}

/// What a deleted device and anyone holding its tokens get afterwards.
async fn assert_locked_out(s: &TestServer, pair: &Value, key: &str, user_token: &str) {
    let c = s.client();
    let me = c.get_auth("/me", access(pair)).await;
    assert_eq!(me.status, 401, "the deleted device's access token still works: {}", me.text());
    let r = c.post("/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(r.status, 401, "the deleted device's refresh token still works: {}", r.text());

    let mut own = SyncClient::plain(s.sync).await;
    let reply = own.auth(&auth_payload(access(pair), key, "claude_code")).await;
    assert!(reply.reason().contains("device_removed"), "own key: {}", reply.reason());

    let mut other = SyncClient::plain(s.sync).await;
    let reply = other.auth(&auth_payload(access(pair), "another-key", "claude_code")).await;
    assert!(matches!(reply, AuthReply::Err { .. }), "a deleted device's token registered another key");
    assert!(
        !reply.reason().contains("device_removed") && !reply.reason().contains("expired"),
        "{}",
        reply.reason()
    );
    let list = c.get_auth("/me/devices", user_token).await.json();
    assert!(list["devices"].as_array().unwrap().iter().all(|d| d["device_key"] != "another-key"), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_deleted_by_its_user_is_locked_out() {
    let s = TestServer::start().await;
    let c = s.client();
    create_user(s.app(), "alice", "user-password-1", Role::User);
    let browser = c.login("alice", "user-password-1").await;
    let browser = access(&browser).to_owned();
    let (pair, id) = device_login(&c, &browser, "laptop-key").await;
    let mut live = session(&s, access(&pair), "laptop-key").await;
    // Before the deletion the device's tokens are fine, and bound to their key.
    assert_eq!(c.get_auth("/me", access(&pair)).await.status, 200);
    let mut wrong = SyncClient::plain(s.sync).await;
    let reply = wrong.auth(&auth_payload(access(&pair), "not-its-key", "claude_code")).await;
    assert!(reply.reason().contains("another device"), "{}", reply.reason());

    let r = c.send_auth("DELETE", &format!("/me/devices/{id}"), &browser, None).await;
    assert_eq!(r.status, 200);
    assert_closed(&mut live, "device deleted by its user").await;
    assert_locked_out(&s, &pair, "laptop-key", &browser).await;
    // The browser's own sign-in (not the device's) is untouched.
    assert_eq!(c.get_auth("/me", &browser).await.status, 200);

    // Signing the same machine in again through the device flow works.
    let (again, _) = device_login(&c, &browser, "laptop-key").await;
    session(&s, access(&again), "laptop-key").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_deleted_by_an_admin_is_locked_out() {
    let s = TestServer::start().await;
    let c = s.client();
    create_user(s.app(), "bob", "user-password-1", Role::User);
    let browser = c.login("bob", "user-password-1").await;
    let browser = access(&browser).to_owned();
    let (pair, id) = device_login(&c, &browser, "desk-key").await;
    // A rotated pair of the same family goes too.
    let rotated = c.post("/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await.json();
    let mut live = session(&s, access(&rotated), "desk-key").await;
    let admin = c.admin_token().await;
    let r = c.send_auth("DELETE", &format!("/admin/devices/{id}"), &admin, None).await;
    assert_eq!(r.status, 200);
    assert_closed(&mut live, "device deleted by an admin").await;
    assert_locked_out(&s, &rotated, "desk-key", &browser).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_deleted_with_the_admin_cli_is_locked_out() {
    let s = TestServer::start().await;
    let c = s.client();
    create_user(s.app(), "carol", "user-password-1", Role::User);
    let browser = c.login("carol", "user-password-1").await;
    let (pair, id) = device_login(&c, access(&browser), "box-key").await;
    let mut s = s;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    s.stop().await;
    let (code, out, err) = admin(dir.path(), &["device", "delete", &id], None);
    assert_eq!(code, 0, "{out}{err}");
    let cfg = test_config(dir.path());
    let s = TestServer::start_in(dir, cfg).await;
    let browser = s.client().login("carol", "user-password-1").await;
    assert_locked_out(&s, &pair, "box-key", access(&browser)).await;
}

/// A family the device flow started before tokens were bound (its record names the device only
/// in `device_id`) is bound from its next rotation on, and revoked with the device.
#[tokio::test(flavor = "multi_thread")]
async fn families_from_before_device_binding_are_bound_on_rotation() {
    let s = TestServer::start().await;
    let c = s.client();
    let user = create_user(s.app(), "gina", "user-password-1", Role::User);
    let browser = c.login("gina", "user-password-1").await;
    let device = sync_device(s.app(), user.id, "old-key", "old", 1);
    let old = s.app().tokens.issue(&s.app().store, &user, Some(device.uuid.to_string())).unwrap();
    let r = c.post("/token/refresh", &json!({"refresh_token": old.refresh_token})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pair = r.json();
    let mut wrong = SyncClient::plain(s.sync).await;
    let reply = wrong.auth(&auth_payload(access(&pair), "not-its-key", "claude_code")).await;
    assert!(reply.reason().contains("another device"), "{}", reply.reason());
    let r = c.send_auth("DELETE", &format!("/me/devices/{}", device.uuid), access(&browser), None).await;
    assert_eq!(r.status, 200);
    assert_locked_out(&s, &pair, "old-key", access(&browser)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_deletion_and_password_changes_close_sync_connections() {
    let s = TestServer::start().await;
    let c = s.client();
    let admin = c.admin_token().await;
    for name in ["dora", "erin", "fred"] {
        create_user(s.app(), name, "user-password-1", Role::User);
    }
    let token =
        |name: &'static str| async move { access(&c.login(name, "user-password-1").await).to_owned() };

    // The user changes their own password.
    let dora = token("dora").await;
    let mut live = session(&s, &dora, "dora-key").await;
    let r = c
        .send_auth(
            "PATCH",
            "/me/password",
            &dora,
            Some(&json!({"current_password": "user-password-1", "new_password": "user-password-2"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_closed(&mut live, "password changed").await;

    // An admin resets a password.
    let erin = token("erin").await;
    let mut live = session(&s, &erin, "erin-key").await;
    let id = s.app().store.user_by_name("erin").unwrap().unwrap().uuid;
    let r = c
        .send_auth(
            "PATCH",
            &format!("/admin/users/{id}/password"),
            &admin,
            Some(&json!({"password": "reset-pass-1"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_closed(&mut live, "password reset").await;

    // An admin deletes the account.
    let fred = token("fred").await;
    let mut live = session(&s, &fred, "fred-key").await;
    let id = s.app().store.user_by_name("fred").unwrap().unwrap().uuid;
    assert_eq!(c.send_auth("DELETE", &format!("/admin/users/{id}"), &admin, None).await.status, 200);
    assert_closed(&mut live, "user deleted").await;
    assert!(s.app().sessions.list().is_empty(), "{:?}", s.app().sessions.list());
}

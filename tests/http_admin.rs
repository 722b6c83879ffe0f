//! Admin endpoints over real sockets: authorization, settings, pending registrations, server
//! info, live sessions, users, devices and teams.

mod common;

use common::*;
use serde_json::{Value, json};
use toki_sync::config::RegistrationMode;
use toki_sync::store::now_secs;
use toki_sync::store::users::Role;
use toki_sync::sync::registry::SessionInfo;

const PW: &str = "user-password-1";
const SOME_UUID: &str = "0d7f1b52-54c4-4c2f-9a55-1b0f8a3f6a11";

async fn user_token(s: &TestServer, name: &str) -> String {
    create_user(s.app(), name, PW, Role::User);
    s.client().login(name, PW).await["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_endpoint_needs_the_admin_role() {
    let s = TestServer::start().await;
    let c = s.client();
    let user = user_token(&s, "plain").await;
    let victim = create_user(s.app(), "victim", PW, Role::User);
    let v = victim.uuid.to_string();
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/admin/settings".into(), None),
        ("PATCH", "/admin/settings".into(), Some(json!({"registration_mode": "open"}))),
        ("PUT", "/admin/settings/registration_mode".into(), Some(json!({"value": "open"}))),
        ("GET", "/admin/pending".into(), None),
        ("POST", format!("/admin/pending/{v}/approve"), None),
        ("POST", format!("/admin/pending/{v}/reject"), None),
        ("DELETE", format!("/admin/pending/{v}"), None),
        ("GET", "/admin/server-info".into(), None),
        ("PATCH", format!("/admin/users/{v}/role"), Some(json!({"role": "admin"}))),
        ("GET", "/admin/active".into(), None),
        ("GET", "/admin/users".into(), None),
        ("POST", "/admin/users".into(), Some(json!({"username": "sneaky", "password": "sneaky-password"}))),
        ("DELETE", format!("/admin/users/{v}"), None),
        ("PATCH", format!("/admin/users/{v}/password"), Some(json!({"password": "taken-over-1"}))),
        ("GET", "/admin/devices".into(), None),
        ("DELETE", format!("/admin/devices/{SOME_UUID}"), None),
        ("GET", "/admin/teams".into(), None),
        ("POST", "/admin/teams".into(), Some(json!({"name": "mine"}))),
        ("DELETE", format!("/admin/teams/{SOME_UUID}"), None),
        ("GET", format!("/admin/teams/{SOME_UUID}/members"), None),
        ("POST", format!("/admin/teams/{SOME_UUID}/members"), Some(json!({"user_id": v}))),
        ("DELETE", format!("/admin/teams/{SOME_UUID}/members/{v}"), None),
    ];
    for (method, path, body) in &calls {
        let r = c.raw(method, path, &[], None).await;
        assert_eq!((r.status, r.error().as_str()), (401, "missing Authorization header"), "{method} {path}");
        let r = c.send_auth(method, path, &user, body.as_ref()).await;
        assert_eq!((r.status, r.error().as_str()), (403, "admin role required"), "{method} {path}");
    }
    // Nothing changed.
    let store = &s.app().store;
    assert_eq!(store.users().unwrap().len(), 3);
    assert_eq!(store.user(victim.id).unwrap().unwrap().role, Role::User);
    assert!(store.setting("registration_mode").unwrap().is_none());
    assert!(store.teams().unwrap().is_empty());
    c.login("victim", PW).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_get_patch_and_put() {
    let s = TestServer::start().await;
    let c = s.client();
    let t = c.admin_token().await;
    assert_eq!(c.get_auth("/admin/settings", &t).await.json(), json!({"registration_mode": "closed"}));
    let r =
        c.send_auth("PATCH", "/admin/settings", &t, Some(&json!({"registration_mode": "approval"}))).await;
    assert_eq!((r.status, r.json()), (200, json!({"registration_mode": "approval"})));
    assert_eq!(c.get("/auth/info").await.json()["registration_mode"], "approval");
    let r =
        c.send_auth("PUT", "/admin/settings/registration_mode", &t, Some(&json!({"value": "open"}))).await;
    assert_eq!((r.status, r.json()), (200, json!({"registration_mode": "open"})));
    assert_eq!(
        c.post("/register", &json!({"username": "newbie", "password": "newbie-password"})).await.status,
        201
    );

    let r =
        c.send_auth("PATCH", "/admin/settings", &t, Some(&json!({"registration_mode": "sometimes"}))).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (422, "registration_mode must be \"open\", \"approval\" or \"closed\"")
    );
    let r = c
        .send_auth(
            "PATCH",
            "/admin/settings",
            &t,
            Some(&json!({"registration_mode": "closed", "color": "red"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("unknown setting `color`"), "{}", r.error());
    assert_eq!(
        c.get_auth("/admin/settings", &t).await.json()["registration_mode"],
        "open",
        "a refused PATCH changes nothing"
    );
    let r = c.send_auth("PUT", "/admin/settings/color", &t, Some(&json!({"value": "red"}))).await;
    assert_eq!(r.status, 404);
    let r = c.send_auth("PUT", "/admin/settings/registration_mode", &t, Some(&json!({"value": 5}))).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        c.send_auth("PUT", "/admin/settings/registration_mode", &t, Some(&json!({}))).await.status,
        400
    );
    assert_eq!(c.send_auth("PATCH", "/admin/settings", &t, None).await.status, 400);
    assert_eq!(
        c.send_auth("PATCH", "/admin/settings", &t, Some(&json!({}))).await.json(),
        json!({"registration_mode": "open"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_registrations_are_approved_or_rejected() {
    let s = TestServer::start_with(|c| c.auth.registration_mode = RegistrationMode::Approval).await;
    let c = s.client();
    let t = c.admin_token().await;
    for name in ["pend1", "pend2", "pend3"] {
        assert_eq!(
            c.post("/register", &json!({"username": name, "password": "pending-password"})).await.status,
            202
        );
    }
    let pending = c.get_auth("/admin/pending", &t).await.json();
    let ids: Vec<String> =
        pending["pending"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(pending["pending"][0]["status"], "pending");

    let r = c.send_auth("POST", &format!("/admin/pending/{}/approve", ids[0]), &t, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((r.json()["username"].as_str(), r.json()["status"].as_str()), (Some("pend1"), Some("active")));
    c.login("pend1", "pending-password").await;
    let r = c.send_auth("POST", &format!("/admin/pending/{}/approve", ids[0]), &t, None).await;
    assert_eq!((r.status, r.error().as_str()), (404, "pending user not found"), "already active");
    let r = c.send_auth("DELETE", &format!("/admin/pending/{}", ids[0]), &t, None).await;
    assert_eq!(r.status, 404, "an active user is not rejected");
    c.login("pend1", "pending-password").await;

    let r = c.send_auth("DELETE", &format!("/admin/pending/{}", ids[1]), &t, None).await;
    assert_eq!((r.status, r.json()), (200, json!({"rejected": true})));
    let r = c.send_auth("POST", &format!("/admin/pending/{}/reject", ids[2]), &t, None).await;
    assert_eq!((r.status, r.json()), (200, json!({"rejected": true})));
    for name in ["pend2", "pend3"] {
        assert_eq!(
            c.post("/login", &json!({"username": name, "password": "pending-password"})).await.status,
            401
        );
    }
    assert_eq!(c.get_auth("/admin/pending", &t).await.json(), json!({"pending": []}));
    assert_eq!(c.send_auth("POST", "/admin/pending/nope/approve", &t, None).await.status, 404);
    assert_eq!(
        c.send_auth("POST", &format!("/admin/pending/{SOME_UUID}/reject"), &t, None).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn users_create_role_password_and_delete() {
    let s = TestServer::start().await;
    let c = s.client();
    let t = c.admin_token().await;
    let r = c
        .send_auth(
            "POST",
            "/admin/users",
            &t,
            Some(&json!({"username": "frank", "password": "frank-password"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let frank = r.json();
    assert_eq!((frank["username"].as_str(), frank["role"].as_str()), (Some("frank"), Some("user")));
    let fid = frank["id"].as_str().unwrap().to_owned();
    let r = c
        .send_auth(
            "POST",
            "/admin/users",
            &t,
            Some(&json!({"username": "Frank", "password": "frank-password"})),
        )
        .await;
    assert_eq!((r.status, r.error().as_str()), (409, "username already exists"));
    for (body, msg) in [
        (json!({"username": "x", "password": "long-enough"}), "username must be 3-32 characters"),
        (json!({"username": "gina", "password": "short"}), "password must be 8-128 characters"),
        (
            json!({"username": "gina", "password": "long-enough", "role": "root"}),
            "role must be \"admin\" or \"user\"",
        ),
    ] {
        let r = c.send_auth("POST", "/admin/users", &t, Some(&body)).await;
        assert_eq!((r.status, r.error()), (422, msg.to_owned()));
    }
    let r = c
        .send_auth(
            "POST",
            "/admin/users",
            &t,
            Some(&json!({"username": "gina", "password": "gina-password", "role": "admin"})),
        )
        .await;
    assert_eq!(r.json()["role"], "admin");
    let gid = r.json()["id"].as_str().unwrap().to_owned();

    let users = c.get_auth("/admin/users", &t).await.json();
    let names: Vec<&str> =
        users["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "frank", "gina"]);
    assert!(users["users"][0].get("password_hash").is_none(), "no secrets in listings");

    let r =
        c.send_auth("PATCH", &format!("/admin/users/{fid}/role"), &t, Some(&json!({"role": "admin"}))).await;
    assert_eq!((r.status, r.json()["role"].as_str()), (200, Some("admin")));
    let r =
        c.send_auth("PATCH", &format!("/admin/users/{fid}/role"), &t, Some(&json!({"role": "king"}))).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        c.send_auth("PATCH", &format!("/admin/users/{SOME_UUID}/role"), &t, Some(&json!({"role": "user"})))
            .await
            .status,
        404
    );

    // The last admin can be neither demoted nor deleted.
    let admin_id = users["users"][0]["id"].as_str().unwrap().to_owned();
    for id in [&fid, &gid] {
        c.send_auth("PATCH", &format!("/admin/users/{id}/role"), &t, Some(&json!({"role": "user"}))).await;
    }
    let r = c
        .send_auth("PATCH", &format!("/admin/users/{admin_id}/role"), &t, Some(&json!({"role": "user"})))
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = c.send_auth("DELETE", &format!("/admin/users/{admin_id}"), &t, None).await;
    assert_eq!(r.status, 409);
    c.login("admin", ADMIN_PASSWORD).await;

    // Password set by an admin: the old refresh tokens stop working.
    let old = c.login("frank", "frank-password").await;
    let r = c
        .send_auth(
            "PATCH",
            &format!("/admin/users/{fid}/password"),
            &t,
            Some(&json!({"password": "frank-password-2"})),
        )
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"updated": true})));
    assert_eq!(c.post("/token/refresh", &json!({"refresh_token": old["refresh_token"]})).await.status, 401);
    c.login("frank", "frank-password-2").await;
    let r = c
        .send_auth("PATCH", &format!("/admin/users/{fid}/password"), &t, Some(&json!({"password": "x"})))
        .await;
    assert_eq!(r.status, 422);
    for id in [SOME_UUID, "not-an-id"] {
        let r = c
            .send_auth(
                "PATCH",
                &format!("/admin/users/{id}/password"),
                &t,
                Some(&json!({"password": "long-enough-1"})),
            )
            .await;
        assert_eq!((r.status, r.error().as_str()), (404, "user not found"), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_removes_devices_tokens_and_memberships() {
    let s = TestServer::start().await;
    let c = s.client();
    let t = c.admin_token().await;
    let hank = create_user(s.app(), "hank", PW, Role::User);
    let ivy = create_user(s.app(), "ivy", PW, Role::User);
    let pair = c.login("hank", PW).await;
    let d = sync_device(s.app(), hank.id, "hank-key", "hank-box", now_secs());
    let keep = sync_device(s.app(), ivy.id, "ivy-key", "ivy-box", now_secs());
    let team = s.app().store.create_team("crew", 1).unwrap();
    s.app().store.add_team_member(team.id, hank.id, toki_sync::store::teams::TeamRole::Member, 1).unwrap();
    s.app().store.add_team_member(team.id, ivy.id, toki_sync::store::teams::TeamRole::Member, 1).unwrap();
    let live = s.app().sessions.register(session_for(&hank, &d));
    ingest_events(&s, hank.id, d.id, 25).await;
    ingest_events(&s, ivy.id, keep.id, 5).await;
    assert_eq!(event_count(&s.app().store), 30);

    let r = c.send_auth("DELETE", &format!("/admin/users/{}", hank.uuid), &t, None).await;
    assert_eq!((r.status, r.json()), (200, json!({"deleted": true})));
    tokio::time::timeout(std::time::Duration::from_secs(10), live.killed())
        .await
        .expect("their sync connections are closed");
    assert_eq!(
        c.get_auth("/me", pair["access_token"].as_str().unwrap()).await.status,
        401,
        "their access token stops working"
    );
    assert_eq!(c.post("/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await.status, 401);
    assert!(s.app().store.device(d.id).unwrap().is_none());
    assert!(s.app().store.device(keep.id).unwrap().is_some());
    assert_eq!(s.app().store.team_member_ids(team.id).unwrap(), vec![ivy.id]);
    assert_eq!(event_count(&s.app().store), 5, "hank's events are gone, ivy's stay");
    assert_eq!(usage_totals(&s.app().store, hank.id).0, 0, "and so are hank's rollups");
    assert_eq!(usage_totals(&s.app().store, ivy.id).0, 5);
    assert_eq!(c.send_auth("DELETE", &format!("/admin/users/{}", hank.uuid), &t, None).await.status, 404);
    assert_eq!(c.send_auth("DELETE", "/admin/users/not-an-id", &t, None).await.status, 404);
}

fn session_for(user: &toki_sync::store::users::User, d: &toki_sync::store::devices::Device) -> SessionInfo {
    SessionInfo {
        user_id: user.id,
        user_uuid: user.uuid,
        username: user.username.clone(),
        device_id: d.id,
        device_uuid: d.uuid,
        device_name: d.name.clone(),
        provider: "codex".into(),
        peer: "127.0.0.1:41000".parse().unwrap(),
        tls: true,
        connected_at: 1_800_000_000,
        last_activity_at: 1_800_000_060,
        last_batch_at: Some(1_800_000_060),
        last_ts_ms: 1_799_999_999_000,
        events_accepted: 12,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_server_info_and_active_sessions() {
    let s = TestServer::start().await;
    let c = s.client();
    let t = c.admin_token().await;
    let jo = create_user(s.app(), "jo", PW, Role::User);
    let kim = create_user(s.app(), "kim", PW, Role::User);
    let dj = sync_device(s.app(), jo.id, "jo-key", "jo-laptop", 100);
    let dk = sync_device(s.app(), kim.id, "kim-key", "kim-desktop", 100);

    let list = c.get_auth("/admin/devices", &t).await.json();
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(
        (devices[0]["name"].as_str(), devices[0]["username"].as_str()),
        (Some("jo-laptop"), Some("jo"))
    );
    assert_eq!(devices[1]["user_id"], kim.uuid.to_string());
    assert_eq!(devices[1]["device_key"], "kim-key");

    let _s1 = s.app().sessions.register(session_for(&jo, &dj));
    let _s2 = s.app().sessions.register(session_for(&jo, &dj));
    let info = c.get_auth("/admin/server-info", &t).await;
    assert_eq!(info.status, 200);
    let info = info.json();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["uptime_secs"].is_u64());
    assert_eq!(info["connected_devices"], 1, "two sessions of one device");
    assert_eq!(info["registration_mode"], "closed");
    assert_eq!(info["oidc_enabled"], false);
    assert_eq!(info["storage_backend"], "redb");
    assert_eq!(info["database"]["users"], 3);
    assert_eq!(info["database"]["devices"], 2);
    assert_eq!(info["database"]["events"], 0);
    assert!(info["database"]["file_bytes"].as_u64().unwrap() > 0);

    let active = c.get_auth("/admin/active", &t).await.json();
    let a = &active["active"][0];
    assert_eq!(active["active"].as_array().unwrap().len(), 2);
    assert_eq!(a["device_id"], dj.uuid.to_string());
    assert_eq!(a["device_name"], "jo-laptop");
    assert_eq!(a["user_id"], jo.uuid.to_string());
    assert_eq!(a["username"], "jo");
    assert_eq!(a["provider"], "codex");
    assert_eq!(a["peer"], "127.0.0.1:41000");
    assert_eq!(a["tls"], true);
    assert_eq!(
        (a["connected_at"].as_i64(), a["last_activity_at"].as_i64()),
        (Some(1_800_000_000), Some(1_800_000_060))
    );
    assert_eq!(a["last_ts_ms"], 1_799_999_999_000i64);

    let r = c.send_auth("DELETE", &format!("/admin/devices/{}", dk.uuid), &t, None).await;
    assert_eq!((r.status, r.json()), (200, json!({"deleted": true})));
    assert!(s.app().store.is_tombstoned(kim.id, "kim-key").unwrap());
    assert_eq!(c.send_auth("DELETE", &format!("/admin/devices/{}", dk.uuid), &t, None).await.status, 404);
    assert_eq!(c.send_auth("DELETE", "/admin/devices/zzz", &t, None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn teams_and_members() {
    let s = TestServer::start().await;
    let c = s.client();
    let t = c.admin_token().await;
    let lee = create_user(s.app(), "lee", PW, Role::User);
    let lee_token = c.login("lee", PW).await["access_token"].as_str().unwrap().to_owned();

    let r = c.send_auth("POST", "/admin/teams", &t, Some(&json!({"name": "  Platform  "}))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let team = r.json();
    assert_eq!(team["name"], "Platform");
    let tid = team["id"].as_str().unwrap().to_owned();
    let r = c.send_auth("POST", "/admin/teams", &t, Some(&json!({"name": "platform"}))).await;
    assert_eq!((r.status, r.error().as_str()), (409, "team name already exists"));
    for bad in ["", "   ", &"n".repeat(65)] {
        let r = c.send_auth("POST", "/admin/teams", &t, Some(&json!({"name": bad}))).await;
        assert_eq!(r.status, 422, "{bad:?}");
    }

    let members = format!("/admin/teams/{tid}/members");
    let r = c
        .send_auth("POST", &members, &t, Some(&json!({"user_id": lee.uuid.to_string(), "role": "admin"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!((r.json()["username"].as_str(), r.json()["role"].as_str()), (Some("lee"), Some("admin")));
    let r = c.send_auth("POST", &members, &t, Some(&json!({"user_id": lee.uuid.to_string()}))).await;
    assert_eq!((r.status, r.error().as_str()), (409, "user is already a member of this team"));
    let r = c.send_auth("POST", &members, &t, Some(&json!({"user_id": SOME_UUID}))).await;
    assert_eq!((r.status, r.error().as_str()), (404, "user not found"));
    let r = c
        .send_auth("POST", &members, &t, Some(&json!({"user_id": lee.uuid.to_string(), "role": "boss"})))
        .await;
    assert_eq!(r.status, 422);
    let r = c
        .send_auth(
            "POST",
            &format!("/admin/teams/{SOME_UUID}/members"),
            &t,
            Some(&json!({"user_id": lee.uuid.to_string()})),
        )
        .await;
    assert_eq!((r.status, r.error().as_str()), (404, "team not found"));

    let list = c.get_auth(&members, &t).await.json();
    assert_eq!(list["members"].as_array().unwrap().len(), 1);
    assert_eq!(list["members"][0]["user_id"], lee.uuid.to_string());
    assert_eq!(list["members"][0]["role"], "admin");
    let teams = c.get_auth("/admin/teams", &t).await.json();
    assert_eq!(teams["teams"][0]["member_count"], 1);
    assert_eq!(c.get_auth("/me/teams", &lee_token).await.json()[0]["team_name"], "Platform");

    let one = format!("{members}/{}", lee.uuid);
    assert_eq!(c.send_auth("DELETE", &one, &t, None).await.json(), json!({"removed": true}));
    let r = c.send_auth("DELETE", &one, &t, None).await;
    assert_eq!((r.status, r.error().as_str()), (404, "user is not a member of this team"));
    assert_eq!(c.get_auth("/me/teams", &lee_token).await.json(), json!([]));

    c.send_auth("POST", &members, &t, Some(&json!({"user_id": lee.uuid.to_string()}))).await;
    let r = c.send_auth("DELETE", &format!("/admin/teams/{tid}"), &t, None).await;
    assert_eq!((r.status, r.json()), (200, json!({"deleted": true})));
    assert_eq!(c.get_auth("/admin/teams", &t).await.json(), json!({"teams": []}));
    assert_eq!(c.get_auth("/me/teams", &lee_token).await.json(), json!([]));
    assert_eq!(c.send_auth("DELETE", &format!("/admin/teams/{tid}"), &t, None).await.status, 404);
    assert_eq!(c.get_auth(&members, &t).await.status, 404);
    let r = c.send_auth("DELETE", &format!("/admin/teams/{tid}/members/{}", lee.uuid), &t, None).await;
    assert_eq!((r.status, r.error().as_str()), (404, "team not found"), "a deleted team");
    let r = c.send_auth("DELETE", &format!("/admin/teams/{SOME_UUID}/members/{}", lee.uuid), &t, None).await;
    assert_eq!((r.status, r.error().as_str()), (404, "team not found"), "a team that never existed");
}

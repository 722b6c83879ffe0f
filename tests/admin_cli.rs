//! The offline admin CLI's parity commands (approve/reject registrations, teams, devices) on a
//! data file prepared through the store, then checked through the store and the running server.

mod common;

use common::*;
use serde_json::Value;
use toki_sync::auth::password::hash_blocking;
use toki_sync::store::devices::AuthDevice;
use toki_sync::store::users::{NewUser, Role, UserStatus};
use toki_sync::store::{DB_FILE_NAME, Store};

fn new_user(name: &str, status: UserStatus) -> NewUser {
    NewUser {
        username: name.into(),
        role: Role::User,
        status,
        password_hash: Some(hash_blocking("cli-password-1")),
        oidc_subject: None,
    }
}

fn json_out(dir: &std::path::Path, args: &[&str]) -> Value {
    let (code, out, err) = admin(dir, args, None);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

#[test]
fn registrations_teams_and_devices_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (device_id, olga_id) = {
        let store = Store::open(&d.join(DB_FILE_NAME)).unwrap();
        store.create_user(NewUser { role: Role::Admin, ..new_user("admin", UserStatus::Active) }).unwrap();
        let olga = store.create_user(new_user("olga", UserStatus::Active)).unwrap();
        store.create_user(new_user("wait1", UserStatus::Pending)).unwrap();
        store.create_user(new_user("wait2", UserStatus::Pending)).unwrap();
        let AuthDevice::Ready(dev) = store.auth_device(olga.id, "olga-key", "olga-laptop", 100).unwrap()
        else {
            panic!()
        };
        store.close().unwrap();
        (dev.uuid.to_string(), olga.id)
    };

    // Registrations.
    let (code, out, err) = admin(d, &["user", "approve", "wait1"], None);
    assert_eq!((code, out.trim()), (0, "approved `wait1`"), "{err}");
    let (code, _, err) = admin(d, &["user", "approve", "wait1"], None);
    assert_eq!(code, 1);
    assert!(err.contains("not waiting for approval"), "{err}");
    let (code, _, err) = admin(d, &["user", "reject", "olga"], None);
    assert_eq!(code, 1, "an active user is not rejected");
    assert!(err.contains("not waiting for approval"), "{err}");
    let (code, out, _) = admin(d, &["user", "reject", "wait2"], None);
    assert_eq!((code, out.trim()), (0, "rejected and deleted `wait2`"));
    let users = json_out(d, &["user", "list", "--json"]);
    let names: Vec<(&str, &str)> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["username"].as_str().unwrap(), u["status"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("admin", "active"), ("olga", "active"), ("wait1", "active")]);

    // Teams.
    assert_eq!(admin(d, &["team", "add", "Research"], None).0, 0);
    let (code, _, err) = admin(d, &["team", "add", "research"], None);
    assert_eq!(code, 1);
    assert!(err.contains("team name already exists"), "{err}");
    let (code, _, err) = admin(d, &["team", "add", ""], None);
    assert_eq!(code, 1);
    assert!(err.contains("team name must be 1-64 characters"), "{err}");
    assert_eq!(admin(d, &["team", "add-member", "research", "olga", "--role", "admin"], None).0, 0);
    assert_eq!(admin(d, &["team", "add-member", "Research", "wait1"], None).0, 0);
    let (code, _, err) = admin(d, &["team", "add-member", "Research", "olga"], None);
    assert_eq!(code, 1);
    assert!(err.contains("already a member"), "{err}");
    let (code, _, err) = admin(d, &["team", "add-member", "nope", "olga"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no team named `nope`"), "{err}");
    let members = json_out(d, &["team", "members", "Research", "--json"]);
    let rows: Vec<(&str, &str)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["username"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, [("olga", "admin"), ("wait1", "member")]);
    assert_eq!(admin(d, &["team", "remove-member", "Research", "wait1"], None).0, 0);
    let (code, _, err) = admin(d, &["team", "remove-member", "Research", "wait1"], None);
    assert_eq!(code, 1);
    assert!(err.contains("not a member"), "{err}");
    let teams = json_out(d, &["team", "list", "--json"]);
    assert_eq!(teams["teams"][0]["member_count"], 1);
    assert_eq!(admin(d, &["team", "add", "Temp"], None).0, 0);
    assert_eq!(admin(d, &["team", "delete", "temp"], None).0, 0);
    assert_eq!(json_out(d, &["team", "list", "--json"])["teams"].as_array().unwrap().len(), 1);

    // Devices.
    let devices = json_out(d, &["device", "list", "--json"]);
    assert_eq!(devices["devices"][0]["id"], device_id.as_str());
    assert_eq!(devices["devices"][0]["username"], "olga");
    let (_, table, _) = admin(d, &["device", "list", "--user", "olga"], None);
    assert!(table.contains("olga-laptop"), "{table}");
    let (_, table, _) = admin(d, &["device", "list", "--user", "wait1"], None);
    assert_eq!(table.lines().count(), 1, "only the header: {table}");
    let (code, _, err) = admin(d, &["device", "delete", "not-an-id"], None);
    assert_eq!(code, 1);
    assert!(err.contains("not a device id"), "{err}");
    let (code, out, err) = admin(d, &["device", "delete", &device_id], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted device `olga-laptop`"), "{out}");
    let (code, _, err) = admin(d, &["device", "delete", &device_id], None);
    assert_eq!(code, 1);
    assert!(err.contains("no device with id"), "{err}");

    let stats = json_out(d, &["stats", "--json"]);
    assert_eq!(
        (stats["users"].as_u64(), stats["devices"].as_u64(), stats["teams"].as_u64()),
        (Some(3), Some(0), Some(1))
    );

    // Deleting a user takes their memberships with them; the file stays consistent.
    assert_eq!(admin(d, &["user", "delete", "olga"], None).0, 0);
    let store = Store::open(&d.join(DB_FILE_NAME)).unwrap();
    assert!(store.user(olga_id).unwrap().is_none());
    assert!(!store.is_tombstoned(olga_id, "olga-key").unwrap(), "a deleted user's tombstones go too");
    let team = store.team_by_name("research").unwrap().unwrap();
    assert!(store.team_member_ids(team.id).unwrap().is_empty());
    assert!(store.user_teams(olga_id).unwrap().is_empty());
}

#[test]
fn vm_resync_queues_every_rollup_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    {
        use toki_sync::store::codec::Record;
        let store = Store::open(&d.join(DB_FILE_NAME)).unwrap();
        let rec =
            toki_sync::store::events::RollupRecord { events: 1, usage_total: 5, tokens: vec![] }.encode();
        store
            .write(|txn| {
                let mut rollups = txn.open_table(toki_sync::store::schema::ROLLUPS)?;
                rollups.insert((1, 10, 1, 1, 1, 0), rec.as_slice())?;
                rollups.insert((1, 11, 1, 1, 1, 0), rec.as_slice())?;
                Ok::<_, toki_sync::store::StoreError>(())
            })
            .unwrap();
        assert!(store.vm_backlog().unwrap().is_empty());
        store.close().unwrap();
    }
    let (code, out, err) = admin(d, &["vm-resync"], None);
    assert_eq!((code, out.trim()), (0, "queued 2 hourly buckets for VictoriaMetrics"), "{err}");
    assert_eq!(Store::open(&d.join(DB_FILE_NAME)).unwrap().vm_backlog().unwrap().buckets, 2);
}

#[test]
fn link_oidc_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    {
        let store = Store::open(&d.join(DB_FILE_NAME)).unwrap();
        store.create_user(new_user("olga", UserStatus::Active)).unwrap();
        store.create_user(new_user("pete", UserStatus::Active)).unwrap();
        store.close().unwrap();
    }
    let (code, _, err) = admin(d, &["user", "link-oidc", "olga", "--subject", "s-1"], None);
    assert_ne!(code, 0);
    assert!(err.contains("--issuer"), "without OIDC configured the issuer must be given: {err}");
    let link = |name: &str, sub: &str| {
        admin(d, &["user", "link-oidc", name, "--subject", sub, "--issuer", "https://idp.example"], None)
    };
    let (code, out, err) = link("olga", "s-1");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("s-1"), "{out}");
    let (code, _, err) = link("pete", "s-1");
    assert_ne!(code, 0);
    assert!(err.contains("already linked"), "{err}");
    let (code, _, err) = link("nobody", "s-2");
    assert_ne!(code, 0);
    assert!(err.contains("nobody"), "{err}");
    let store = Store::open(&d.join(DB_FILE_NAME)).unwrap();
    let olga = store.user_by_oidc(&toki_sync::store::users::oidc_key("https://idp.example", "s-1")).unwrap();
    assert_eq!(olga.unwrap().username, "olga");
}

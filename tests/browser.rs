//! The device page in real headless Chromium (Debian's `chromium`, driven by npm
//! `playwright-core` from `tests/browser/`): the test plays the toki CLI over HTTP (code, poll)
//! while the browser signs in and approves; then the dashboard renames and deletes the device.
//! As with the real CLI, the device's name reaches the server only with the first poll, after the
//! page is already open: the page must pick it up while it waits.
//!
//! The dashboard (tests/browser/dashboard.mjs) against a server seeded through the sync port:
//! every view renders, its numbers equal the usage API's, the admin panel works and a non-admin
//! sees none of it, at 375 px too; screenshots go to target/browser-screenshots/.
//!
//! Without Chromium, Node or `npm ci` in tests/browser, plain `cargo test` skips this test;
//! with `TOKI_SYNC_FULL_TESTS=1` (tests/run.sh) it fails instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;
use toki_sync::store::devices::AuthDevice;
use toki_sync::store::users::Role;

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What is missing to run the browser, if anything.
fn missing_component() -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} not found (Debian package `chromium`)"));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("`node` not found (Debian package `nodejs`)".into()),
    }
    if !browser_dir().join("node_modules/playwright-core/package.json").exists() {
        return Some("playwright-core is not installed: run `npm ci` in tests/browser".into());
    }
    None
}

/// Returns false (after saying so) when the test must be skipped.
fn components_present() -> bool {
    let Some(missing) = missing_component() else { return true };
    if std::env::var("TOKI_SYNC_FULL_TESTS").is_ok_and(|v| v == "1") {
        panic!("browser test cannot run: {missing}. tests/run.sh installs what it needs.");
    }
    eprintln!("SKIPPED browser test: {missing} (set TOKI_SYNC_FULL_TESTS=1 to make this a failure)");
    false
}

/// Runs one step of tests/browser/device_flow.mjs and fails the test with its output if it fails.
async fn run_step(step: &'static str, envs: Vec<(&'static str, String)>) {
    run_step_with(step, envs, |_| async {}).await;
}

/// Runs one step of another script in tests/browser/.
async fn run_script(script: &'static str, step: &'static str, envs: Vec<(&'static str, String)>) {
    run_script_with(script, step, envs, |_| async {}).await;
}

/// Like `run_step`, and calls `on_line` with every line the script prints while it runs (the
/// script announces points where the test must act, e.g. the CLI's first poll).
async fn run_step_with<F, Fut>(step: &'static str, envs: Vec<(&'static str, String)>, on_line: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run_script_with("device_flow.mjs", step, envs, on_line).await;
}

async fn run_script_with<F, Fut>(
    script: &'static str,
    step: &'static str,
    envs: Vec<(&'static str, String)>,
    mut on_line: F,
) where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new("node")
        .arg(script)
        .arg(step)
        .current_dir(browser_dir())
        .envs(envs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout_text = String::new();
    while let Some(line) = rx.recv().await {
        stdout_text.push_str(&line);
        stdout_text.push('\n');
        on_line(line).await;
    }
    reader.join().unwrap();
    let stderr_text = stderr_reader.join().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().expect("wait for node")).await.unwrap();
    assert!(
        status.success(),
        "browser step `{script} {step}` failed ({status}):\n{stdout_text}\n{stderr_text}"
    );
    eprint!("{stdout_text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_login_approved_in_a_real_browser() {
    if !components_present() {
        return;
    }
    let s = TestServer::start().await;
    let c = s.client();
    let user = create_user(s.app(), "browser-user", "browser-password-1", Role::User);
    // A name that would be markup if the page parsed it as HTML.
    let device_name = "<b>work</b> & <img src=x>";

    // The CLI: `toki settings sync enable` asks for a code (no body, so no name) and opens the
    // browser; its first poll, carrying the machine's name, comes `interval` seconds later.
    let code = c.raw("POST", "/device/code", &[], None).await;
    assert_eq!(code.status, 200);
    let code = code.json();
    let user_code = code["user_code"].as_str().unwrap().to_owned();
    let poll_body = json!({"device_code": code["device_code"], "device_key": "browser-device-key", "device_name": device_name});

    // The browser: opens <verification_url>?device=CODE before that poll and signs in; the page
    // shows the name once the poll has brought it, then the user approves.
    let base = format!("http://{}", s.addr);
    let common_env = vec![
        ("BASE_URL", base.clone()),
        ("USERNAME", "browser-user".to_owned()),
        ("PASSWORD", "browser-password-1".to_owned()),
        ("DEVICE_NAME", device_name.to_owned()),
    ];
    let mut env = common_env.clone();
    env.push(("USER_CODE", user_code));
    let mut polled = false;
    run_step_with("approve", env, |line| {
        let first_poll = line.trim() == "waiting for the device name" && !polled;
        polled |= first_poll;
        let poll_body = poll_body.clone();
        async move {
            if first_poll {
                let pending = c.post("/device/token", &poll_body).await;
                assert_eq!((pending.status, pending.error().as_str()), (400, "authorization_pending"));
            }
        }
    })
    .await;
    assert!(polled, "the page was open, without a name, before the CLI's first poll");

    // The CLI's next poll succeeds with the user's tokens, and the device is registered.
    let done = c.post("/device/token", &poll_body).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let access = done.json()["access_token"].as_str().unwrap().to_owned();
    let devices = c.get_auth("/me/devices", &access).await.json();
    assert_eq!(devices["devices"][0]["device_key"], "browser-device-key");
    assert_eq!(devices["devices"][0]["name"], device_name);
    let device = s.app().store.devices(Some(user.id)).unwrap().remove(0);

    // The dashboard: sign in, rename, delete.
    let mut env = common_env;
    env.push(("NEW_NAME", "renamed in the browser".to_owned()));
    run_step("dashboard", env).await;
    assert!(s.app().store.device(device.id).unwrap().is_none(), "deleted from the dashboard");
    assert!(matches!(
        s.app().store.auth_device(user.id, "browser-device-key", "x", 1).unwrap(),
        AuthDevice::Removed
    ));
}

/// A few weeks of varied usage for one user: three devices, two providers, several models and
/// projects (one model unpriced), denser in the last days.
async fn seed_usage(s: &TestServer, token: &str, seed: u64) {
    use common::usage::{Ev, sync};
    let now = toki_sync::store::now_ms();
    let mut x = seed;
    let mut rnd = |n: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let claude_models = ["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5"];
    let codex_models = ["gpt-5-codex", "my-local-model"];
    let projects = ["toki-sync", "website", "", "infra"];
    for (key, name, provider) in [
        ("k-laptop", "laptop", "claude_code"),
        ("k-desktop", "desktop", "codex"),
        ("k-server", "build server", "claude_code"),
    ] {
        let mut evs = Vec::new();
        for i in 0..160u64 {
            // Half in the last 2 days, the rest over 40 days.
            let back = if i % 2 == 0 { rnd(2 * 86_400_000) } else { rnd(40 * 86_400_000) } as i64;
            let models: &[&str] = if provider == "codex" { &codex_models } else { &claude_models };
            evs.push((
                now - 60_000 - back,
                format!("{key}-{i}"),
                models[rnd(models.len() as u64) as usize],
                projects[rnd(projects.len() as u64) as usize],
                [rnd(2000), 10 + rnd(3000), rnd(20_000), rnd(200_000)],
            ));
        }
        let batch: Vec<Ev<'_>> = evs
            .iter()
            .map(|(ts, id, model, project, tokens)| Ev {
                ts: *ts,
                id,
                model,
                session: "s",
                project,
                tokens: *tokens,
            })
            .collect();
        sync(s, token, key, name, provider, &batch).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_admin_panel_in_a_real_browser() {
    use common::usage::signed_in;
    use toki_sync::store::teams::TeamRole;
    use toki_sync::store::users::{NewUser, UserStatus};
    if !components_present() {
        return;
    }
    let s = TestServer::start().await;
    let (user, token) = signed_in(&s, "dash-user", Role::User).await;
    let (mate, mate_token) = signed_in(&s, "teammate", Role::User).await;
    signed_in(&s, "dash-admin", Role::Admin).await;
    seed_usage(&s, &token, 1).await;
    seed_usage(&s, &mate_token, 2).await;
    let now = toki_sync::store::now_secs();
    let team = s.app().store.create_team("Platform team", now).unwrap();
    s.app().store.add_team_member(team.id, user.id, TeamRole::Member, now).unwrap();
    s.app().store.add_team_member(team.id, mate.id, TeamRole::Admin, now).unwrap();
    s.app()
        .store
        .create_user(NewUser {
            username: "waiting-user".into(),
            role: Role::User,
            status: UserStatus::Pending,
            password_hash: Some(toki_sync::auth::password::hash_blocking("waiting-password")),
            oidc_subject: None,
        })
        .unwrap();
    // A sync connection that stays open while the browser looks: the laptop is live.
    let mut live = common::sync_client::SyncClient::plain(s.sync).await;
    let mut auth = common::sync_client::auth_payload(&token, "k-laptop", "claude_code");
    auth.device_name = "laptop".into();
    live.auth(&auth).await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let env = vec![
        ("BASE_URL", format!("http://{}", s.addr)),
        ("USERNAME", "dash-user".to_owned()),
        ("PASSWORD", "password-123".to_owned()),
        ("ADMIN_USERNAME", "dash-admin".to_owned()),
        ("ADMIN_PASSWORD", "password-123".to_owned()),
        ("SCREENSHOTS", shots.to_string_lossy().into_owned()),
    ];
    run_script("dashboard.mjs", "user", env.clone()).await;
    // The user step changed dash-user's password, which closes that user's sync connections; the
    // admin step needs a live session to list, so the teammate's machine connects now.
    let mut mate_live = common::sync_client::SyncClient::plain(s.sync).await;
    let mut mate_auth = common::sync_client::auth_payload(&mate_token, "k-mate", "codex");
    mate_auth.device_name = "mate-workstation".into();
    mate_live.auth(&mate_auth).await;
    run_script("dashboard.mjs", "admin", env).await;

    // What the pages did, checked on the server.
    let users = s.app().store.users().unwrap();
    let by_name = |n: &str| users.iter().find(|u| u.username == n).cloned();
    assert!(
        by_name("created-in-browser").is_some_and(|u| u.role == Role::User),
        "created through the admin page"
    );
    assert!(
        by_name("waiting-user").is_some_and(|u| u.status == UserStatus::Active),
        "approved through the admin page"
    );
    assert!(
        by_name("teammate").is_some_and(|u| u.role == Role::Admin),
        "role changed through the admin page"
    );
    let devices = s.app().store.devices(Some(user.id)).unwrap();
    assert!(devices.iter().any(|d| d.name == "renamed server"), "renamed from the devices page");
    assert!(!devices.iter().any(|d| d.name == "desktop"), "deleted from the devices page");
    drop(live);
    drop(mate_live);
}

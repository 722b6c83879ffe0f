//! The device page in real headless Chromium (Debian's `chromium`, driven by npm
//! `playwright-core` from `tests/browser/`): the test plays the toki CLI over HTTP (code, poll)
//! while the browser signs in and approves; then the dashboard renames and deletes the device.
//! As with the real CLI, the device's name reaches the server only with the first poll, after the
//! page is already open: the page must pick it up while it waits.
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

/// Like `run_step`, and calls `on_line` with every line the script prints while it runs (the
/// script announces points where the test must act, e.g. the CLI's first poll).
async fn run_step_with<F, Fut>(step: &'static str, envs: Vec<(&'static str, String)>, mut on_line: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new("node")
        .arg("device_flow.mjs")
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
    assert!(status.success(), "browser step `{step}` failed ({status}):\n{stdout_text}\n{stderr_text}");
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

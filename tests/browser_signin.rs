//! Issue 16, item 4, in real headless Chromium (tests/browser/signin_state.mjs): tokens in the
//! dashboard's address fragment sign the browser in only at the end of a sign-in round trip that
//! this tab started (`client_state` = the value kept in sessionStorage), and a link with another
//! account's tokens never replaces the signed-in session.
//!
//! Without Chromium, Node or `npm ci` in tests/browser, plain `cargo test` skips this test;
//! with `TOKI_SYNC_FULL_TESTS=1` (tests/run.sh) it fails instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use toki_sync::store::users::Role;

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Returns false (after saying so) when the test must be skipped.
fn components_present() -> bool {
    let missing = if !Path::new(CHROMIUM).exists() {
        Some(format!("{CHROMIUM} not found (Debian package `chromium`)"))
    } else if !Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        Some("`node` not found (Debian package `nodejs`)".into())
    } else if !browser_dir().join("node_modules/playwright-core/package.json").exists() {
        Some("playwright-core is not installed: run `npm ci` in tests/browser".into())
    } else {
        None
    };
    let Some(missing) = missing else { return true };
    if std::env::var("TOKI_SYNC_FULL_TESTS").is_ok_and(|v| v == "1") {
        panic!("browser test cannot run: {missing}. tests/run.sh installs what it needs.");
    }
    eprintln!("SKIPPED browser test: {missing} (set TOKI_SYNC_FULL_TESTS=1 to make this a failure)");
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn fragment_tokens_need_a_round_trip_this_tab_started() {
    if !components_present() {
        return;
    }
    let s = TestServer::start().await;
    let c = s.client();
    create_user(s.app(), "victim", "victim-password-1", Role::User);
    create_user(s.app(), "attacker", "attacker-password-1", Role::User);
    let other = c.login("attacker", "attacker-password-1").await;
    let envs = [
        ("BASE_URL", format!("http://{}", s.addr)),
        ("USERNAME", "victim".to_owned()),
        ("PASSWORD", "victim-password-1".to_owned()),
        ("OTHER_ACCESS", other["access_token"].as_str().unwrap().to_owned()),
        ("OTHER_REFRESH", other["refresh_token"].as_str().unwrap().to_owned()),
    ];
    let dir = browser_dir();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").arg("signin_state.mjs").current_dir(dir).envs(envs).output().expect("start node")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "signin_state.mjs failed ({}):\n{stdout}\n{stderr}", out.status);
    eprint!("{stdout}");
}

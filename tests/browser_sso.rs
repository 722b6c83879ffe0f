//! SSO in real headless Chromium (Debian's `chromium`, driven by npm `playwright-core` from
//! tests/browser/) against a real OpenID provider (npm oidc-provider from tests/oidc/): sign-in
//! from /login lands on the dashboard signed in, and the device page approves a pending code
//! through SSO.
//!
//! Without Chromium, Node, or `npm ci` in tests/browser and tests/oidc, plain `cargo test` skips
//! this test; with `TOKI_SYNC_FULL_TESTS=1` (tests/run.sh) it fails instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::oidc::*;
use common::*;
use serde_json::json;
use toki_sync::store::users::Role;

const CHROMIUM: &str = "/usr/bin/chromium";
const LABEL: &str = "Sign in with Test IdP";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn components_present() -> bool {
    let missing = if !Path::new(CHROMIUM).exists() {
        Some(format!("{CHROMIUM} not found (Debian package `chromium`)"))
    } else if !browser_dir().join("node_modules/playwright-core/package.json").exists() {
        Some("playwright-core is not installed: run `npm ci` in tests/browser".into())
    } else {
        missing_provider()
    };
    let Some(missing) = missing else { return true };
    if std::env::var("TOKI_SYNC_FULL_TESTS").is_ok_and(|v| v == "1") {
        panic!("SSO browser test cannot run: {missing}. tests/run.sh installs what it needs.");
    }
    eprintln!("SKIPPED SSO browser test: {missing} (set TOKI_SYNC_FULL_TESTS=1 to make this a failure)");
    false
}

async fn run_step(step: &'static str, envs: Vec<(&'static str, String)>) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").arg("sso_flow.mjs").arg(step).current_dir(browser_dir()).envs(envs).output()
    })
    .await
    .unwrap()
    .expect("start node");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser step `{step}` failed ({}):\n{text}", out.status);
    eprint!("{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_sign_in_and_device_approval_in_a_real_browser() {
    if !components_present() {
        return;
    }
    let setup = start(0, |c| c.oidc.button_label = LABEL.into()).await;
    let c = setup.s.client();
    setup.provider().account("ivy-sub", "ivy", &[]);
    // Someone else's valid tokens, for the page to refuse when they arrive unasked.
    create_user(setup.s.app(), "victim", "victim-password-1", Role::User);
    let foreign = c.login("victim", "victim-password-1").await["access_token"].as_str().unwrap().to_owned();
    let env = |extra: Vec<(&'static str, String)>| {
        let mut e = vec![
            ("BASE_URL", setup.base.clone()),
            ("LOGIN", "ivy-sub".to_owned()),
            ("USERNAME", "ivy".to_owned()),
            ("LABEL", LABEL.to_owned()),
        ];
        e.extend(extra);
        e
    };
    run_step("login", env(vec![("FOREIGN_TOKEN", foreign)])).await;

    // The CLI asks for a code; the browser approves it through SSO; the CLI's poll gets tokens.
    let code = c.raw("POST", "/device/code", &[], None).await.json();
    let user_code = code["user_code"].as_str().unwrap().to_owned();
    run_step("device", env(vec![("USER_CODE", user_code)])).await;
    let poll =
        json!({"device_code": code["device_code"], "device_key": "sso-device", "device_name": "laptop"});
    let done = c.post("/device/token", &poll).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let me = c.get_auth("/me", done.json()["access_token"].as_str().unwrap()).await.json();
    assert_eq!(me["username"], "ivy", "the device belongs to the account signed in through SSO");
}

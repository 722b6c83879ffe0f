//! The real binary: first start, restart, SIGTERM, configuration errors, and the offline admin
//! CLI against a stopped and a running server.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn first_start_prints_a_generated_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::start(dir.path(), &[]);
    let (clean, stdout) = stop_after(server, |addr| {
        runtime().block_on(async { assert_eq!(Client::at(addr).get("/health").await.status, 200) });
    });
    assert!(clean, "SIGTERM ends the server with status 0");
    let password = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password in stdout: {stdout}"))
        .to_owned();
    assert!(password.len() >= 16, "{password}");
    assert!(stdout.contains("username: admin"));

    // Second start: the account exists, nothing is printed, the password works.
    let server = BinServer::start(dir.path(), &[]);
    let (clean, stdout) = stop_after(server, |addr| {
        runtime().block_on(async { Client::at(addr).login("admin", &password).await });
    });
    assert!(clean);
    assert!(!stdout.contains("password:"), "the password is shown only on the first start: {stdout}");
}

#[test]
fn a_bad_tls_certificate_stops_start_up_before_the_admin_is_created() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let out = Command::new(bin())
        .args(["serve", "--bind", "127.0.0.1", "--http-port", "0", "--sync-port", "0", "--data-dir"])
        .arg(&data)
        .env_remove("TOKI_ADMIN_PASSWORD")
        .env("TOKI_SYNC_TLS__CERT_FILE", &cert)
        .env("TOKI_SYNC_TLS__KEY_FILE", &key)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot start") && stderr.contains(&*cert.to_string_lossy()), "{stderr}");
    assert!(!stdout.contains("password:"), "no password was generated: {stdout}");
    let (code, _, err) = admin(&data, &["user", "list"], None);
    assert_eq!(code, 1, "no data file, so no admin whose password nobody saw");
    assert!(err.contains("no data file"), "{err}");

    // Fixed configuration (here: the generated certificate): the first real start shows the password.
    let server = BinServer::start(&data, &[]);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory is private even though the certificate was made first");
    let (clean, stdout) = server.stop();
    assert!(clean);
    let password = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let server = BinServer::start(&data, &[]);
    runtime().block_on(async { Client::at(server.http).login("admin", password).await });
    assert!(server.stop().0);
}

/// Runs `f` against the server, then stops it with SIGTERM; returns (exit ok, stdout).
fn stop_after(server: BinServer, f: impl FnOnce(std::net::SocketAddr)) -> (bool, String) {
    f(server.http);
    server.stop()
}

#[test]
fn admin_password_from_environment_and_restart_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [("TOKI_ADMIN_PASSWORD", "env-admin-password")];
    let server = BinServer::start(dir.path(), &envs);
    let pair: Value =
        runtime().block_on(async { Client::at(server.http).login("admin", "env-admin-password").await });
    let (clean, stdout) = server.stop();
    assert!(clean);
    assert!(!stdout.contains("password:"), "nothing to show when the password was given");

    let mut server = BinServer::start(dir.path(), &[]);
    runtime().block_on(async {
        let c = Client::at(server.http);
        let r = c.post("/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
        assert_eq!(r.status, 200, "refresh tokens and the signing secret survive a restart");
        c.login("admin", "env-admin-password").await;
    });
    server.signal(libc::SIGTERM);
    server.wait_for_log("data file closed", Duration::from_secs(15));
    let status = server.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn configuration_errors_stop_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["serve", "--http-port", "99999", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.http_port") && err.contains("--http-port") && err.contains("0 to 65535"),
        "{err}"
    );

    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[auth]\nregistration_mode = \"maybe\"\n").unwrap();
    let out = Command::new(bin()).args(["serve", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.registration_mode") && err.contains("\"closed\""), "{err}");

    let out = Command::new(bin()).args(["serve", "--config", "/nonexistent/toki.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));

    let out = Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("TOKI_SYNC_AUTH__BRUTE_FORCE_MAX_ATTEMPTS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOKI_SYNC_AUTH__BRUTE_FORCE_MAX_ATTEMPTS"));
}

#[test]
fn config_print_default_matches_the_shipped_file() {
    let out = Command::new(bin()).args(["config", "print-default", "--packaged"]).output().unwrap();
    assert!(out.status.success());
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/toki-sync.toml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), shipped);
}

#[test]
fn admin_cli_on_a_stopped_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, err) = admin(d, &["user", "list"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no data file"), "{err}");

    // Create the file with a first start, then stop.
    let (clean, _) = BinServer::start(d, &[("TOKI_ADMIN_PASSWORD", "first-admin-pw")]).stop();
    assert!(clean);

    let (code, out, err) = admin(d, &["user", "add", "alice", "--password-stdin"], Some("alice-password\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created user `alice`"), "{out}");
    let (code, _, err) = admin(d, &["user", "add", "ALICE", "--password-stdin"], Some("alice-password\n"));
    assert_eq!(code, 1);
    assert!(err.contains("username already exists"), "{err}");
    let (code, _, err) = admin(d, &["user", "add", "bob", "--password-stdin"], Some("short\n"));
    assert_eq!(code, 1);
    assert!(err.contains("password must be 8-128 characters"), "{err}");
    let (code, _, err) = admin(d, &["user", "add", "b b", "--password-stdin"], Some("long-enough\n"));
    assert_eq!(code, 1);
    assert!(err.contains("username may only contain"), "{err}");
    let (code, _, err) = admin(d, &["user", "add", "bob"], Some("long-enough\n"));
    assert_eq!(code, 2, "--password-stdin is required: {err}");
    let (code, _, _) =
        admin(d, &["user", "add", "root2", "--role", "admin", "--password-stdin"], Some("root2-password"));
    assert_eq!(code, 0);

    let (code, out, _) = admin(d, &["user", "list", "--json"], None);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> =
        list["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "alice", "root2"]);
    assert_eq!(list["users"][2]["role"], "admin");
    let (_, table, _) = admin(d, &["user", "list"], None);
    assert!(table.lines().count() == 4 && table.contains("alice"), "{table}");

    assert_eq!(admin(d, &["user", "role", "alice", "admin"], None).0, 0);
    assert_eq!(admin(d, &["user", "role", "alice", "user"], None).0, 0);
    let (code, _, err) = admin(d, &["user", "role", "nobody", "user"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no user named `nobody`"), "{err}");
    assert_eq!(admin(d, &["user", "passwd", "alice", "--password-stdin"], Some("alice-password-2\r\n")).0, 0);
    assert_eq!(admin(d, &["user", "delete", "root2"], None).0, 0);
    let (code, _, err) = admin(d, &["user", "delete", "admin"], None);
    assert_eq!(code, 1, "the last admin cannot be deleted");
    assert!(err.contains("last active admin") || err.contains("without an active admin"), "{err}");
    let (code, _, _) = admin(d, &["user", "role", "admin", "user"], None);
    assert_eq!(code, 1, "the last admin cannot be demoted");

    let (code, out, _) = admin(d, &["settings", "get"], None);
    assert_eq!(code, 0);
    assert!(out.contains("registration_mode = closed (configuration default)"), "{out}");
    // `registration_mode` is the name (as in the file and the HTTP API); `registration-mode` is an alias.
    assert_eq!(admin(d, &["settings", "set", "registration_mode", "open"], None).0, 0);
    let (_, out, _) = admin(d, &["settings", "get", "registration_mode"], None);
    assert!(out.contains("registration_mode = open (stored setting)"), "{out}");
    assert_eq!(admin(d, &["settings", "set", "registration-mode", "approval"], None).0, 0);
    let (_, out, _) = admin(d, &["settings", "get", "registration-mode"], None);
    assert!(out.contains("registration_mode = approval (stored setting)"), "{out}");
    let (code, _, _) = admin(d, &["settings", "set", "registration_mode", "sometimes"], None);
    assert_eq!(code, 2);
    let (code, _, _) = admin(d, &["settings", "get", "registration_modes"], None);
    assert_eq!(code, 2);

    let (code, out, _) = admin(d, &["stats", "--json"], None);
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["users"], 2);
    assert!(stats["file_bytes"].as_u64().unwrap() > 0);

    // The server sees every change.
    let server = BinServer::start(d, &[]);
    runtime().block_on(async {
        let c = Client::at(server.http);
        c.login("alice", "alice-password-2").await;
        assert_eq!(
            c.post("/login", &json!({"username": "root2", "password": "root2-password"})).await.status,
            401
        );
        assert_eq!(c.get("/auth/info").await.json()["registration_mode"], "approval");
    });
    assert!(server.stop().0);
}

#[test]
fn admin_cli_refuses_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = BinServer::start(d, &[("TOKI_ADMIN_PASSWORD", "first-admin-pw")]);
    for args in [&["user", "list"][..], &["stats"], &["settings", "get"]] {
        let (code, _, err) = admin(d, args, None);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("in use by another process") && err.contains("Stop the server"), "{err}");
    }
    let (code, _, err) = admin(d, &["user", "add", "mallory", "--password-stdin"], Some("mallory-password"));
    assert_eq!(code, 1, "{err}");
    runtime().block_on(async {
        let c = Client::at(server.http);
        assert_eq!(c.get("/health").await.status, 200, "the running server is unaffected");
        c.login("admin", "first-admin-pw").await;
    });
    assert!(server.stop().0);
    // The file is intact and the refused change did not happen.
    let (code, out, _) = admin(d, &["user", "list", "--json"], None);
    assert_eq!(code, 0);
    assert!(!out.contains("mallory"));
}

#[test]
fn readme_configuration_table_is_current() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let out = Command::new(bin()).args(["config", "keys"]).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        readme.contains(&table),
        "README.md's configuration table is stale; paste the output of `toki-sync config keys`"
    );
}

#[test]
fn sigterm_works_after_stderr_is_closed() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--bind", "127.0.0.1", "--http-port", "0", "--sync-port", "0", "--data-dir"])
        .arg(dir.path())
        .env("TOKI_ADMIN_PASSWORD", "stderr-test-pw")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l.contains("toki-sync is serving")));
    // The log reader goes away (a pipe reader exits, journald restarts): logging must not break
    // the server, and SIGTERM must still stop it cleanly.
    drop(lines);
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop on SIGTERM after its stderr closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

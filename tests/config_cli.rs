//! `config check` and the shape of the command line, through the real binary: what `serve`
//! would refuse is found without starting, and `--data-dir`/`--config` work anywhere.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Runs the binary with `args` and `envs` (and none of our variables from the test's own
/// environment); returns (exit code, stdout, stderr).
fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TOKI_SYNC_") || k == "RUST_LOG" || k == "TOKI_ADMIN_PASSWORD" || k == "JWT_SECRET" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.envs(envs.iter().copied()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn config_check_finds_what_serve_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dd = d.to_str().unwrap();

    // A clean loopback configuration.
    let (code, out, err) = run(&["config", "check", "--data-dir", dd], &[("TOKI_SYNC_BIND", "127.0.0.1")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration is valid") && out.contains("log filter:  info"), "{out}");
    assert!(out.contains("pricing:     built-in price table"), "{out}");
    assert!(err.is_empty(), "{err}");
    assert!(!d.join("tls").exists(), "config check creates nothing");

    // The default bind: valid, with the plain-HTTP warning.
    let (code, _, err) = run(&["config", "check", "--data-dir", dd], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: plain HTTP is served on 0.0.0.0:9091"), "{err}");

    // Missing TLS files and an unknown key: both reported, the error fails the check.
    let file = write(
        d,
        "tls.toml",
        "[server]\nbind = \"127.0.0.1\"\nhtp_port = 1\n[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
    );
    let (code, out, err) = run(&["config", "check", "--config", &file], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("warning: unknown key `server.htp_port`"), "{err}");
    assert!(err.contains("cannot read TLS certificate /nonexistent/cert.pem"), "{err}");
    assert!(!out.contains("configuration is valid"), "{out}");

    // A bad pricing file and a bad TLS pair: both errors are shown.
    let prices = write(d, "prices.toml", "[models.x]\ninput = 1\n");
    let garbage = write(d, "garbage.pem", "not PEM");
    let file = write(
        d,
        "both.toml",
        &format!(
            "[server]\nbind = \"127.0.0.1\"\n[tls]\ncert_file = {garbage:?}\nkey_file = {garbage:?}\n[pricing]\nfile = {prices:?}\n"
        ),
    );
    let (code, _, err) = run(&["config", "check", "--config", &file], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("pricing file") && err.contains("`output` is missing"), "{err}");
    assert!(err.contains("garbage.pem"), "{err}");

    // A configured certificate that works (the one serve would generate) is described.
    let made = d.join("made");
    make_self_signed(&made);
    let (cert, key) = (made.join("tls/cert.pem"), made.join("tls/key.pem"));
    let file = write(
        d,
        "good.toml",
        &format!("[server]\nbind = \"127.0.0.1\"\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n", cert, key),
    );
    let (code, out, err) = run(&["config", "check", "--config", &file], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("TLS:         ") && out.contains("SHA-256 fingerprint"), "{out}");

    // A mistyped log level, from the file and from RUST_LOG.
    let file = write(d, "log.toml", "[log]\nlevel = \"verbose\"\n");
    let (code, _, err) = run(&["config", "check", "--config", &file], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("log.level") && err.contains("`verbose` is not a level"), "{err}");
    let (code, _, err) = run(&["config", "check"], &[("RUST_LOG", "inf")]);
    assert_eq!(code, 2);
    assert!(err.contains("RUST_LOG") && err.contains("`inf` is not a level"), "{err}");
    let (code, out, _) = run(&["config", "check"], &[("RUST_LOG", "warn,toki_sync::http=debug")]);
    assert_eq!(code, 0);
    assert!(out.contains("log filter:  warn,toki_sync::http=debug"), "{out}");

    // Lists from the environment in either form; a shortcut and its long form must agree.
    let (code, _, err) =
        run(&["config", "check"], &[("TOKI_SYNC_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]")]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("plain HTTP"), "a proxy is configured: {err}");
    let (code, _, err) = run(
        &["config", "check"],
        &[("TOKI_SYNC_HTTP_PORT", "9000"), ("TOKI_SYNC_SERVER__HTTP_PORT", "9001")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("TOKI_SYNC_HTTP_PORT") && err.contains("TOKI_SYNC_SERVER__HTTP_PORT"), "{err}");
}

#[test]
fn serve_refuses_a_log_filter_that_would_log_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let args = ["serve", "--bind", "127.0.0.1", "--http-port", "0", "--sync-port", "0", "--data-dir", data];
    for (envs, needle) in [
        (&[("TOKI_SYNC_LOG__LEVEL", "verbose")][..], "`verbose` is not a level"),
        (&[("RUST_LOG", "toki_sync=loud")][..], "`toki_sync=loud` is not TARGET=LEVEL"),
    ] {
        let (code, _, err) = run(&args, envs);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("configuration error") && err.contains(needle), "{err}");
    }
    assert!(!Path::new(data).exists(), "refused before touching anything");
}

/// The generated certificate of a data directory, made by one short `serve` run.
fn make_self_signed(data_dir: &Path) {
    let server = BinServer::start(data_dir, &[("TOKI_ADMIN_PASSWORD", "config-cli-pw")]);
    assert!(server.stop().0);
}

#[test]
fn data_dir_and_config_are_accepted_anywhere_on_the_admin_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dd = d.to_str().unwrap();
    drop(toki_sync::store::Store::open(&d.join(toki_sync::store::DB_FILE_NAME)).unwrap());
    let (code, _, err) = run(&["admin", "user", "add", "alice", "--password-stdin", "--data-dir", dd], &[]);
    // No stdin password: refused, but not as an unexpected argument.
    assert!(!err.contains("unexpected argument"), "{err}");
    assert_ne!(code, 2, "{err}");
    let (code, out, err) = run(&["admin", "stats", "--json", "--data-dir", dd], &[]);
    assert_eq!(code, 0, "{err}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert!(stats["users"].is_u64(), "{stats}");
    let (code, out, err) = run(&["admin", "stats", "--data-dir", dd, "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), stats);

    // --config after the subcommand, with the data directory in the file.
    let file = write(d, "c.toml", &format!("[storage]\ndata_dir = {dd:?}\n"));
    let (code, out, err) = run(&["admin", "user", "list", "--json", "--config", &file], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["users"], serde_json::json!([]), "{out}");
    let (code, out, err) = run(&["config", "check", "--config", &file, "--data-dir", "/elsewhere"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("data file:   /elsewhere/toki-sync.redb"), "the flag wins: {out}");
}

//! Tests of the whole configuration: layering, errors, printers.

use super::load::{Env, Overrides};
use super::*;

fn load(file: Option<&str>, env: &[(&str, &str)], ov: Overrides) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let mut ov = ov;
    if let Some(text) = file {
        let p = dir.path().join("toki-sync.toml");
        std::fs::write(&p, text).unwrap();
        ov.config_file = Some(p);
    }
    Config::load(&ov, &Env::from_pairs(env.iter().copied()))
}

#[test]
fn defaults_match_the_contract() {
    let c = Config::defaults();
    assert_eq!(c.server.http_port, 9091);
    assert_eq!(c.server.sync_port, 9090);
    assert_eq!(c.auth.access_token_ttl_secs, 3600);
    assert_eq!(c.auth.refresh_token_ttl_secs, 7_776_000);
    assert_eq!(c.auth.registration_mode, RegistrationMode::Closed);
    assert_eq!(c.auth.brute_force_max_attempts, 5);
    assert_eq!(c.auth.brute_force_window_secs, 300);
    assert_eq!(c.auth.brute_force_lockout_secs, 900);
    assert_eq!(c.auth.device_code_ttl_secs, 900);
    assert_eq!(c.http.max_body_bytes, 1 << 20);
    assert!(c.backend.vm_url.is_none());
    assert!(c.server.external_url.is_none());
}

#[test]
fn precedence_is_default_file_env_flag() {
    let file = "[server]\nhttp_port = 1000\nsync_port = 1001\nbind = \"127.0.0.1\"\n[auth]\nregistration_mode = \"open\"\n";
    let c = load(Some(file), &[], Overrides::default()).unwrap();
    assert_eq!(c.server.http_port, 1000);
    assert_eq!(c.auth.registration_mode, RegistrationMode::Open);

    let env = [("TOKI_SYNC_HTTP_PORT", "2000"), ("TOKI_SYNC_AUTH__REGISTRATION_MODE", "approval")];
    let c = load(Some(file), &env, Overrides::default()).unwrap();
    assert_eq!(c.server.http_port, 2000);
    assert_eq!(c.server.sync_port, 1001);
    assert_eq!(c.auth.registration_mode, RegistrationMode::Approval);

    let ov = Overrides { http_port: Some("3000".into()), ..Default::default() };
    let c = load(Some(file), &env, ov).unwrap();
    assert_eq!(c.server.http_port, 3000);
}

#[test]
fn shortcut_env_beats_long_env() {
    let env = [("TOKI_SYNC_SERVER__HTTP_PORT", "2000"), ("TOKI_SYNC_HTTP_PORT", "2001")];
    let c = load(None, &env, Overrides::default()).unwrap();
    assert_eq!(c.server.http_port, 2001);
}

#[test]
fn bad_values_name_the_key_and_what_is_allowed() {
    let e = load(Some("[server]\nhttp_port = 70000\n"), &[], Overrides::default()).unwrap_err().0;
    assert!(e.contains("server.http_port") && e.contains("0 to 65535"), "{e}");
    let e = load(None, &[("TOKI_SYNC_AUTH__REGISTRATION_MODE", "sometimes")], Overrides::default())
        .unwrap_err()
        .0;
    assert!(
        e.contains("auth.registration_mode")
            && e.contains("\"approval\"")
            && e.contains("TOKI_SYNC_AUTH__REGISTRATION_MODE"),
        "{e}"
    );
    let e = load(Some("[server]\nbind = 5\n"), &[], Overrides::default()).unwrap_err().0;
    assert!(e.contains("server.bind") && e.contains("IP address"), "{e}");
    let e = load(Some("[backend]\nvm_url = \"ftp://x\"\n"), &[], Overrides::default()).unwrap_err().0;
    assert!(e.contains("backend.vm_url") && e.contains("http://"), "{e}");
    let e = load(Some("server = 1\n"), &[], Overrides::default()).unwrap_err().0;
    assert!(e.contains("must be a table"), "{e}");
    let e = load(Some("[server\n"), &[], Overrides::default()).unwrap_err().0;
    assert!(e.contains("not valid TOML"), "{e}");
    let e = load(None, &[("JWT_SECRET", "short")], Overrides::default()).unwrap_err().0;
    assert!(e.contains("at least 32"), "{e}");
    let e = load(None, &[("TOKI_ADMIN_PASSWORD", "short")], Overrides::default()).unwrap_err().0;
    assert!(e.contains("TOKI_ADMIN_PASSWORD") && e.contains("8-128"), "{e}");
    let ov = Overrides { sync_port: Some("x".into()), ..Default::default() };
    let e = load(None, &[], ov).unwrap_err().0;
    assert!(e.contains("--sync-port"), "{e}");
    let e = load(Some("[auth]\nrefresh_token_ttl_secs = 600\n"), &[], Overrides::default()).unwrap_err().0;
    assert!(e.contains("refresh_token_ttl_secs"), "{e}");
}

#[test]
fn unknown_keys_are_reported_with_suggestions() {
    let c = load(
        Some("[server]\nhtp_port = 1\n[auth]\nbind = \"x\"\n[nonsense]\na = 1\n"),
        &[("TOKI_SYNC_WHATEVER", "1"), ("TOKI_SYNC_FULL_TESTS", "1")],
        Overrides::default(),
    )
    .unwrap();
    let w = c.warnings.join("\n");
    assert!(w.contains("`server.htp_port`") && w.contains("did you mean `server.http_port`"), "{w}");
    assert!(w.contains("`auth.bind`") && w.contains("did you mean `server.bind`"), "{w}");
    assert!(w.contains("nonsense.a"), "{w}");
    assert!(w.contains("TOKI_SYNC_WHATEVER"), "{w}");
    assert!(!w.contains("FULL_TESTS"), "{w}");
}

#[test]
fn lists_urls_and_secrets() {
    let c = load(
        Some("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nexternal_url = \"https://t.example.com/\"\n"),
        &[("JWT_SECRET", "0123456789abcdef0123456789abcdef"), ("TOKI_ADMIN_PASSWORD", "correct horse")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert_eq!(c.server.external_url.as_deref(), Some("https://t.example.com"));
    assert!(c.secrets.jwt_secret.is_some());
    assert!(!format!("{:?}", c.secrets).contains("correct horse"));
    let c =
        load(None, &[("TOKI_SYNC_SERVER__TRUSTED_PROXIES", "127.0.0.1, 10.1.0.0/16")], Overrides::default())
            .unwrap();
    assert_eq!(c.server.trusted_proxies.len(), 2);
}

#[test]
fn default_file_round_trips_to_defaults() {
    let text = default_file();
    let c = load(Some(&text), &[], Overrides::default()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let d = Config::defaults();
    assert_eq!(format!("{:?}", c.server), format!("{:?}", d.server));
    assert_eq!(format!("{:?}", c.auth), format!("{:?}", d.auth));
    assert_eq!(format!("{:?}", c.http), format!("{:?}", d.http));
    // Every key appears, set or commented out.
    for (_, key) in all_keys() {
        assert!(text.contains(&format!("{} = ", key.name)), "{} missing", key.name);
    }
}

#[test]
fn shipped_example_is_current() {
    let shipped = include_str!("../../packaging/toki-sync.toml");
    assert_eq!(
        shipped,
        default_file(),
        "packaging/toki-sync.toml is stale: regenerate it with `toki-sync config print-default > packaging/toki-sync.toml`"
    );
}
